// Parses each Mermaid file named on the command line with the Mermaid
// library, as a code host would before rendering it. Exits 1 on the first
// file that does not parse.
import fs from 'node:fs';
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!DOCTYPE html><body></body>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false });

for (const file of process.argv.slice(2)) {
  try {
    await mermaid.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    console.error(`${file}: Mermaid cannot parse it: ${err.message}`);
    process.exit(1);
  }
}
