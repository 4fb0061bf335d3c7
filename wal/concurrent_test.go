package wal

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/logpos"
)

// TestSyncCoalesces: many concurrent Sync calls after a batch of appends
// cost one data fsync.
func TestSyncCoalesces(t *testing.T) {
	var fsyncs atomic.Int32
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileSyncData {
			fsyncs.Add(1)
		}
		return nil
	}))
	l := mustOpen(t, "wal", Options{FS: fs, SegmentSize: 1 << 20})
	defer l.Close()
	mustAppend(t, l, entries(0, 99, 0)...)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if got, err := l.Sync(context.Background()); err != nil || got != 99 {
				t.Errorf("Sync = %d, %v", got, err)
			}
		})
	}
	wg.Wait()
	if n := fsyncs.Load(); n != 1 {
		t.Fatalf("%d fsyncs for one batch", n)
	}
}

// TestAppendDuringFsync: appends and reads go on while an fsync runs, and
// the fsync covers only what was appended before it.
func TestAppendDuringFsync(t *testing.T) {
	inSync, proceed := make(chan struct{}), make(chan struct{})
	var block atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileSyncData && block.CompareAndSwap(true, false) {
			inSync <- struct{}{}
			<-proceed
		}
		return nil
	}))
	l := mustOpen(t, "wal", Options{FS: fs, SegmentSize: 1 << 20})
	defer l.Close()
	mustAppend(t, l, entries(0, 9, 0)...)
	mustSync(t, l)
	mustAppend(t, l, entries(10, 19, 0)...)
	block.Store(true)
	done := make(chan logpos.Offset)
	go func() {
		o, err := l.Sync(context.Background())
		if err != nil {
			t.Error(err)
		}
		done <- o
	}()
	select {
	case <-inSync:
	case o := <-done:
		block.Store(false)
		t.Fatalf("Sync returned %d without an fdatasync", o)
	}
	mustAppend(t, l, entries(20, 29, 0)...) // would deadlock if the fsync held the lock
	if got := readAll(t, l, 0); len(got) != 10 {
		t.Fatalf("read %d entries during the fsync", len(got))
	}
	close(proceed)
	if got := <-done; got != 19 {
		t.Fatalf("Sync = %d, want 19", got)
	}
	if got := mustSync(t, l); got != 29 {
		t.Fatalf("Sync = %d, want 29", got)
	}
}

// TestConcurrentUse runs one appender, several syncers, tailing readers
// and a control goroutine (truncate, trim) at once, then closes the log
// under them. Run it with -race.
func TestConcurrentUse(t *testing.T) {
	for _, real := range []bool{false, true} {
		name := "memfs"
		if real {
			name = "disk"
		}
		t.Run(name, func(t *testing.T) {
			opts := Options{FS: vfs.NewMem(), SegmentSize: 2048}
			dir := "wal"
			if real {
				opts.FS, dir = vfs.Default, t.TempDir()
			}
			l := mustOpen(t, dir, opts)
			var (
				wg        sync.WaitGroup
				stop      = make(chan struct{})
				truncated atomic.Int32
				mu        sync.Mutex
				current   = map[logpos.Offset]logpos.Entry{} // latest version per offset
			)
			appended := make(chan struct{}, 1)
			const total = 3000
			// The appender; it also does the truncations (the follower's
			// Truncate runs while the stream is not attached).
			wg.Go(func() {
				next := logpos.Offset(0)
				gen := 0
				for next < total {
					e := entry(next, gen)
					mu.Lock()
					current[next] = e
					mu.Unlock()
					err := l.AppendAsync(e)
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						t.Errorf("append %d: %v", next, err)
						return
					}
					next++
					select {
					case appended <- struct{}{}:
					default:
					}
					if next%500 == 0 {
						gen++
						lastSafe := next - 137
						got, err := l.TruncateLog(lastSafe)
						if errors.Is(err, ErrClosed) {
							return
						}
						if err != nil || got != lastSafe {
							t.Errorf("TruncateLog(%d) = %d, %v", lastSafe, got, err)
							return
						}
						truncated.Add(1)
						next = lastSafe + 1
					}
				}
			})
			for range 3 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						case <-appended:
						}
						if _, err := l.Sync(context.Background()); err != nil {
							if !errors.Is(err, ErrClosed) {
								t.Errorf("sync: %v", err)
							}
							return
						}
					}
				})
			}
			for range 2 {
				wg.Go(func() {
					r, err := l.NewReader(0)
					if err != nil {
						if !errors.Is(err, ErrClosed) {
							t.Error(err)
						}
						return
					}
					defer r.Close()
					var prev logpos.Offset = -1
					for {
						select {
						case <-stop:
							return
						default:
						}
						e, err := r.Next()
						switch {
						case errors.Is(err, ErrCaughtUp):
							if _, err := l.Sync(context.Background()); errors.Is(err, ErrClosed) {
								return
							}
							continue
						case errors.Is(err, ErrLogChanged), errors.Is(err, ErrTrimmed):
							// Start again from what is left.
							r.Close()
							if r, err = l.NewReader(max(l.FirstOffset(), 0)); err != nil {
								return
							}
							prev = -1
							continue
						case errors.Is(err, ErrClosed):
							return
						case err != nil:
							t.Errorf("reader: %v", err)
							return
						}
						if prev >= 0 && e.Offset != prev+1 {
							t.Errorf("reader went from %d to %d", prev, e.Offset)
							return
						}
						prev = e.Offset
						mu.Lock()
						want := current[e.Offset]
						mu.Unlock()
						// An entry read is the latest version unless a truncation
						// removed it since, which the next Next reports.
						if equalEntries([]logpos.Entry{e}, []logpos.Entry{want}) != nil && e.Term == want.Term {
							t.Errorf("read %+v, want %+v", e, want)
							return
						}
					}
				})
			}
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					case <-appended:
					}
					if err := l.Trim(l.LastDurable().Offset - 300); err != nil && !errors.Is(err, ErrClosed) {
						t.Errorf("trim: %v", err)
						return
					}
					if _, err := l.NewReverseReader(); errors.Is(err, ErrClosed) {
						return
					} else if err != nil {
						t.Errorf("reverse reader: %v", err)
					}
				}
			})
			// Close while everything runs, once the appender is well in.
			for truncated.Load() < 3 && !t.Failed() {
				if _, err := l.Sync(context.Background()); err != nil {
					t.Error(err)
					break
				}
				r, err := l.NewReverseReader()
				if err != nil {
					t.Error(err)
					break
				}
				if _, err := r.Next(); err != nil && err != io.EOF && !errors.Is(err, ErrLogChanged) && !errors.Is(err, ErrTrimmed) {
					t.Errorf("reverse read: %v", err)
				}
				r.Close()
			}
			if err := l.Close(); err != nil {
				t.Error(err)
			}
			close(stop)
			wg.Wait()
			if t.Failed() {
				return
			}
			if err := l.AppendAsync(entry(total, 0)); !errors.Is(err, ErrClosed) {
				t.Fatalf("append after Close: %v", err)
			}
			// What was durable is intact.
			l = mustOpen(t, dir, opts)
			defer l.Close()
			got := readAll(t, l, max(l.FirstOffset(), 0))
			if len(got) == 0 {
				t.Fatal("nothing left")
			}
			for i := range got {
				if got[i].Offset != got[0].Offset+logpos.Offset(i) {
					t.Fatalf("not contiguous at %d", i)
				}
				mu.Lock()
				want := current[got[i].Offset]
				mu.Unlock()
				if err := equalEntries(got[i:i+1], []logpos.Entry{want}); err != nil {
					t.Fatalf("after reopen: %v", err)
				}
			}
		})
	}
}

// A reader that reads while TruncateLog rewrites the segment it cuts (at
// the write of the cut, or at its fsync) returns the entries up to the
// cut, then the entries appended after the truncation: never what the
// segment held after the cut before.
func TestReaderDuringTruncate(t *testing.T) {
	for name, at := range map[string]errorfs.OpKind{"cut": errorfs.OpFileWriteAt, "fsync": errorfs.OpFileSyncData} {
		t.Run(name, func(t *testing.T) {
			var pause atomic.Bool
			reached, proceed := make(chan struct{}), make(chan struct{})
			seg := "wal/" + segmentName(0)
			fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
				if op.Kind == at && op.Path == seg && pause.CompareAndSwap(true, false) {
					close(reached)
					<-proceed
				}
				return nil
			}))
			l := mustOpen(t, "wal", memOpts(fs))
			defer l.Close()
			mustAppend(t, l, entries(0, 5, 0)...)
			mustSync(t, l)
			r, err := l.NewReader(0)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			for range 2 {
				if _, err := r.Next(); err != nil {
					t.Fatal(err)
				}
			}
			pause.Store(true)
			done := make(chan error)
			go func() { _, err := l.TruncateLog(3); done <- err }()
			select {
			case <-reached: // the truncation is under way; the segment not yet cut
			case err := <-done:
				pause.Store(false)
				t.Fatalf("TruncateLog returned (%v) without the %s step on the segment it cuts", err, name)
			}
			if e, err := r.Next(); err != nil || e.Offset != 2 {
				t.Fatalf("Next during the truncation: %v, %v", e.ID(), err)
			}
			close(proceed)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			mustAppend(t, l, entries(4, 5, 1)...)
			mustSync(t, l)
			var got []logpos.Entry
			for range 3 {
				e, err := r.Next()
				if err != nil {
					t.Fatalf("Next after the truncation: %v", err)
				}
				e.Value = slices.Clone(e.Value)
				got = append(got, e)
			}
			checkEntries(t, got, append(entries(3, 3, 0), entries(4, 5, 1)...))
		})
	}
}
