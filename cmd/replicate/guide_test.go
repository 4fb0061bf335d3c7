package main

import (
	"os"
	"strings"
	"testing"
)

// TestGuideSession replays the session of docs/guide.md that fences,
// truncates and deletes a shard with status, new-term, truncate and
// delete-shard against a fresh followerd, and checks that each command
// prints what the guide shows (stdout and stderr together).
func TestGuideSession(t *testing.T) {
	const first = "$ bin/replicate status --shard 7"
	md, err := os.ReadFile("../../docs/guide.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(md), "```text\n"+first+"\n")
	session, _, closed := strings.Cut(rest, "```")
	if !ok || !closed {
		t.Fatalf("docs/guide.md has no text block starting with %q", first)
	}
	session = first + "\n" + session

	type step struct {
		args []string
		want string
	}
	var steps []step
	for line := range strings.Lines(session) {
		if cmd, ok := strings.CutPrefix(line, "$ bin/replicate "); ok {
			steps = append(steps, step{args: strings.Fields(cmd)})
			continue
		}
		if len(steps) == 0 {
			t.Fatalf("docs/guide.md: output %q before any command", line)
		}
		steps[len(steps)-1].want += line
	}
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
