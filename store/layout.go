package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tablefsm/tablefsm/internal/durable"
)

// Layout of a store directory (see doc.go):
//
//	LOCK              held while the Store is open
//	CURRENT           the marker: the name of the live database directory
//	CURRENT.tmp       a marker being written (removed by Open)
//	db-NNNNNN/        Pebble databases: the live one (named by CURRENT) and
//	                  staging ones being loaded (any other; removed by Open)
//	checkpoint-NNNNNN/ checkpoints read out by a Snapshot (removed by Open)
const (
	lockName         = "LOCK"
	markerName       = "CURRENT"
	markerTempName   = "CURRENT.tmp"
	dbPrefix         = "db-"
	checkpointPrefix = "checkpoint-"
	maxMarkerSize    = 64
)

func dbDirName(seq uint64) string         { return dbPrefix + fmt.Sprintf("%06d", seq) }
func checkpointDirName(seq uint64) string { return checkpointPrefix + fmt.Sprintf("%06d", seq) }

// parseSeq returns the sequence number of a directory name with the given
// prefix ("db-000012" → 12).
func parseSeq(name, prefix string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok || rest == "" {
		return 0, false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(rest, 10, 64)
	return n, err == nil
}

// readMarker returns the live database directory named by the marker, and
// false when there is no marker (a store never created, or whose creation
// did not finish).
func readMarker(fs vfs.FS, dir string) (string, bool, error) {
	f, err := fs.Open(fs.PathJoin(dir, markerName))
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: open marker: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxMarkerSize+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", false, fmt.Errorf("store: read marker: %w", err)
	}
	name, ok := strings.CutSuffix(string(b), "\n")
	// A marker over maxMarkerSize bytes is none the store wrote, whatever
	// its first line (the bytes past the limit were not even read).
	if _, seqOK := parseSeq(name, dbPrefix); !ok || !seqOK || len(b) > maxMarkerSize {
		return "", false, fmt.Errorf("%w: marker %s holds %q", ErrCorrupt, markerName, b)
	}
	return name, true, nil
}

// writeMarker makes name the live database: it writes the marker to a
// temporary file, syncs it, renames it over the marker and syncs the
// directory. renamed reports whether the rename happened: after it, a
// crash may leave either marker (until the directory sync returns), so a
// failure from then on cannot be rolled back.
func writeMarker(fs vfs.FS, dir, name string) (renamed bool, err error) {
	tmp := fs.PathJoin(dir, markerTempName)
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return false, fmt.Errorf("store: create marker: %w", err)
	}
	_, err = f.Write([]byte(name + "\n"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.Rename(tmp, fs.PathJoin(dir, markerName))
	}
	if err != nil {
		_ = fs.Remove(tmp)
		return false, fmt.Errorf("store: write marker: %w", err)
	}
	if err := durable.SyncDir(fs, dir); err != nil {
		return true, fmt.Errorf("store: write marker: %w", err)
	}
	return true, nil
}

// cleanDir removes everything in dir that the store may have left behind
// except the live database: staging databases, checkpoints, a temporary
// marker, and the old database of a finished swap. It returns the highest
// directory sequence number in use.
func cleanDir(fs vfs.FS, dir, live string) (uint64, error) {
	names, err := fs.List(dir)
	if err != nil {
		return 0, fmt.Errorf("store: list %s: %w", dir, err)
	}
	var maxSeq uint64
	removed := false
	var errs []error
	for _, name := range names {
		seq, isDB := parseSeq(name, dbPrefix)
		cseq, isCheckpoint := parseSeq(name, checkpointPrefix)
		switch {
		case isDB:
			maxSeq = max(maxSeq, seq)
			if name == live {
				continue
			}
		case isCheckpoint:
			maxSeq = max(maxSeq, cseq)
		case name == markerTempName:
		default:
			continue
		}
		if err := fs.RemoveAll(fs.PathJoin(dir, name)); err != nil {
			errs = append(errs, err)
		}
		removed = true
	}
	if removed {
		errs = append(errs, durable.SyncDir(fs, dir))
	}
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("store: remove leftovers in %s: %w", dir, err)
	}
	return maxSeq, nil
}
