// Parses each Mermaid file named on the command line with the Mermaid
// library, as a code host would before rendering it, and checks that it
// reads every transition drawn (one per line with an arrow): a line the
// lexer takes for something else can swallow transitions without a parse
// error. Exits 1 on the first file that fails.
import fs from 'node:fs';
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!DOCTYPE html><body></body>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false });

for (const file of process.argv.slice(2)) {
  const text = fs.readFileSync(file, 'utf8');
  let read;
  try {
    await mermaid.parse(text);
    read = (await mermaid.mermaidAPI.getDiagramFromText(text)).db.getRelations().length;
  } catch (err) {
    console.error(`${file}: Mermaid cannot parse it: ${err.message}`);
    process.exit(1);
  }
  const drawn = text.split('\n').filter((line) => line.includes(' --> ')).length;
  if (read !== drawn) {
    console.error(`${file}: Mermaid reads ${read} of the ${drawn} transitions drawn`);
    process.exit(1);
  }
}
