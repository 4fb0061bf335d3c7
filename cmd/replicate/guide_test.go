package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tablefsm/tablefsm/grpcapi/leader"
)

// guideStep is a command line of docs/guide.md and the output shown under it.
type guideStep struct {
	args []string
	want string
}

// readGuide returns docs/guide.md.
func readGuide(t *testing.T) string {
	t.Helper()
	md, err := os.ReadFile("../../docs/guide.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(md)
}

// textBlocks returns the body of every ```text block of md.
func textBlocks(md string) []string {
	var blocks []string
	for {
		_, rest, ok := strings.Cut(md, "```text\n")
		if !ok {
			return blocks
		}
		body, after, _ := strings.Cut(rest, "```")
		blocks, md = append(blocks, body), after
	}
}

// commandSteps splits a session shown in the guide into its command lines
// starting with "$ "+prefix (the arguments after the prefix, split at
// spaces outside single quotes, as a shell does) and the output under
// each; the output of any other command is left out.
func commandSteps(t *testing.T, session, prefix string) []guideStep {
	t.Helper()
	var steps []guideStep
	collecting := false
	for line := range strings.Lines(session) {
		if cmd, ok := strings.CutPrefix(line, "$ "+prefix); ok {
			steps = append(steps, guideStep{args: shellWords(t, strings.TrimSuffix(cmd, "\n"))})
			collecting = true
			continue
		}
		if strings.HasPrefix(line, "$ ") {
			collecting = false
			continue
		}
		if !collecting {
			t.Fatalf("docs/guide.md: output %q of no %q command", line, prefix)
		}
		steps[len(steps)-1].want += line
	}
	return steps
}

// shellWords splits a command line at spaces, keeping what single quotes
// enclose as it is. Anything else a shell would interpret fails the test.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	for line != "" {
		line = strings.TrimLeft(line, " ")
		var word strings.Builder
		for line != "" && line[0] != ' ' {
			if line[0] == '\'' {
				quoted, rest, ok := strings.Cut(line[1:], "'")
				if !ok {
					t.Fatalf("docs/guide.md: unclosed quote in %q", line)
				}
				word.WriteString(quoted)
				line = rest
				continue
			}
			if strings.ContainsAny(line[:1], "\"\\$`|&;<>*?") {
				t.Fatalf("docs/guide.md: %q needs a shell", line)
			}
			word.WriteByte(line[0])
			line = line[1:]
		}
		if word.Len() > 0 {
			words = append(words, word.String())
		}
	}
	return words
}

// TestGuideSession replays the session of docs/guide.md that fences,
// truncates and deletes a shard with status, new-term, truncate and
// delete-shard against a fresh followerd, and checks that each command
// prints what the guide shows (stdout and stderr together).
func TestGuideSession(t *testing.T) {
	const first = "$ bin/replicate status --shard 7"
	_, rest, ok := strings.Cut(readGuide(t), "```text\n"+first+"\n")
	session, _, closed := strings.Cut(rest, "```")
	if !ok || !closed {
		t.Fatalf("docs/guide.md has no text block starting with %q", first)
	}
	steps := commandSteps(t, first+"\n"+session, "bin/replicate ")
	if len(steps) < 5 {
		t.Fatalf("docs/guide.md: the session has %d commands, want at least 5", len(steps))
	}

	p := childFollowerd(t)
	for _, s := range steps {
		args := append([]string{s.args[0], "--target", p.Addr}, s.args[1:]...)
		code, out, errOut := runCLI(t, args...)
		if got := out + errOut; got != s.want {
			t.Errorf("replicate %s (exit %d) printed\n%s\ndocs/guide.md shows\n%s", strings.Join(s.args, " "), code, got, s.want)
		}
		// A refused command prints the status on stderr and exits 1.
		wantCode := 0
		if strings.HasPrefix(s.want, "replicate "+s.args[0]+": ") {
			wantCode = 1
		}
		if code != wantCode {
			t.Errorf("replicate %s exited with %d, want %d", strings.Join(s.args, " "), code, wantCode)
		}
	}
	if code := p.Stop(); code != 0 {
		t.Fatalf("followerd exited with %d", code)
	}
}

// guideAddr is the node address the guide's command lines name.
const guideAddr = "127.0.0.1:6649"

// TestGuideGrpcurl runs the grpcurl command lines of docs/guide.md against
// a fresh followerd whose shard default/7 is fenced and truncated at term
// 1 (as the guide's replicate session leaves it before deleting it), and
// checks that each prints what the guide shows (stdout and stderr
// together), and fails exactly when the guide shows an error. It needs
// grpcurl: `make test` installs it into ./bin and names it in
// TABLEFSM_GRPCURL; elsewhere the test takes grpcurl from PATH, and is
// skipped when there is none.
func TestGuideGrpcurl(t *testing.T) {
	grpcurl := os.Getenv("TABLEFSM_GRPCURL")
	if grpcurl == "" {
		var err error
		if grpcurl, err = exec.LookPath("grpcurl"); err != nil {
			t.Skip("no grpcurl on PATH (make test installs one and runs this test)")
		}
	}
	var steps []guideStep
	for _, block := range textBlocks(readGuide(t)) {
		if strings.Contains(block, "$ grpcurl ") {
			steps = append(steps, commandSteps(t, block, "grpcurl ")...)
		}
	}
	if len(steps) < 5 {
		t.Fatalf("docs/guide.md shows %d grpcurl commands, want at least 5", len(steps))
	}

	p := childFollowerd(t)
	c, ctx := dialNode(t, p.Addr)
	shard := leader.Shard{Namespace: "default", Shard: 7}
	head, err := c.NewTerm(ctx, shard, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Truncate(ctx, shard, 1, head); err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		args := make([]string, len(s.args))
		named := false
		for i, a := range s.args {
			if a == guideAddr {
				a, named = p.Addr, true
			}
			args[i] = a
		}
		if !named {
			t.Fatalf("docs/guide.md: grpcurl %s does not name the node as %s", strings.Join(s.args, " "), guideAddr)
		}
		out, err := exec.CommandContext(ctx, grpcurl, args...).CombinedOutput()
		if string(out) != s.want {
			t.Errorf("grpcurl %s (%v) printed\n%s\ndocs/guide.md shows\n%s", strings.Join(s.args, " "), err, out, s.want)
		}
		if failed, shown := err != nil, strings.HasPrefix(s.want, "ERROR:"); failed != shown {
			t.Errorf("grpcurl %s: error %v, but the guide shows an error: %v", strings.Join(s.args, " "), err, shown)
		}
	}
	if code := p.Stop(); code != 0 {
		t.Fatalf("followerd exited with %d", code)
	}
}
