// Package wal is a segmented write-ahead log: the durable source of truth
// for every entry a follower acknowledges.
//
// # Using it
//
// A Log holds contiguous entries (logpos.Entry: term, offset, value,
// timestamp). AppendAsync adds one without waiting for the disk; Sync makes
// everything appended before it durable with one fsync shared by all
// concurrent callers (group commit, no timer); LastDurable says how far
// durability goes. Readers (NewReader, NewReverseReader) see durable
// entries only; a forward reader at the durable end returns ErrCaughtUp and
// later calls return what became durable since, so one reader can tail the
// log. TruncateLog removes a suffix, Clear everything, Trim whole segments
// from the front; all three are durable before they return.
//
// # Goroutines
//
// The log is built for the follower's shape:
//
//   - one appender at a time calls AppendAsync and SeedChain;
//   - any number of goroutines call Sync (typically one sync loop);
//   - readers, each used by one goroutine at a time, read concurrently;
//   - a control goroutine may call TruncateLog, Clear, Trim, Close and
//     Delete at any time; TruncateLog and Clear wait for the append and
//     the sync in progress, so the follower should call them when no
//     stream is attached (as its lifecycle requires anyway);
//   - LastDurable, LastAppended, LastCRC and FirstOffset may be called
//     from anywhere.
//
// Everything is safe under the race detector whichever goroutine calls it;
// the rules above are about meaning, not memory safety. Close is
// idempotent, waits for the append and the sync in progress, makes the
// appended entries durable (unless the log has failed: see below), stops
// the background goroutine and closes the files; afterwards every method
// returns ErrClosed (the getters return their last values). Readers must
// be closed by their users.
//
// A write or fsync failure is sticky: the log cannot know what reached the
// disk, so it refuses further writes with an error wrapping ErrFailed (and
// the cause). So is a failed fsync of the directory, whichever call meets
// it (Trim, the background index write; at Open, Open fails): it may have
// lost the name of a segment, and a later fsync may succeed without
// writing it. Durable entries stay readable, except those that the
// TruncateLog or Clear that failed was removing. Close and Open again to
// recover: Close of a failed log only closes it, syncing nothing and
// reporting no error (the failure was reported by the call that met it,
// and nothing appended after it was reported durable).
//
// # CRC chain
//
// Each record carries crc_i = CRC32-C(crc_{i-1}, payload_i), where the
// payload is the protobuf encoding of replication.LogEntry (EncodeEntry,
// byte-identical to proto.Marshal). The chain of an empty log starts from
// 0, or from SeedChain's value (after a snapshot, the leader's
// previous_entry_crc), so that leader and follower chains agree. LastCRC is
// the chain value of the last appended entry.
//
// # On disk
//
// One directory per log:
//
//	LOCK                        held while open
//	<first offset, 20 digits>.seg   a segment: entries from that offset on
//	<first offset, 20 digits>.idx   the index of a sealed segment
//	CLEARING                    present only while Clear runs
//	*.tmp                       being written (a prepared segment, an index)
//
// A segment starts with a 32-byte header (magic "TWSG", version, first
// offset, the chain value its first record is seeded with, a CRC of the
// header), followed by records: a 4-byte little-endian length word whose
// high bit is always set (so zeroed space never parses as a record), the
// 4-byte chain CRC, and the payload. Segments are preallocated to
// Options.SegmentSize and prepared by a background goroutine, so a
// rollover on the append path is a rename. A record that does not fit the
// rest of a segment starts the next one; a record larger than a segment
// gets one of its own.
//
// When a segment is sealed (the next one started) and its data is synced,
// the background goroutine writes its index: a 48-byte header (first
// offset, record count, seed and last CRC, end of data, last term, a CRC
// of the positions, a CRC of the header) and the position of every record
// (4 bytes each). It is written to a temporary file, fsynced, renamed and
// the directory fsynced.
//
// # Recovery
//
// Open trusts a sealed segment whose index header is valid and agrees with
// the segment (first offset, seed, size) and reads nothing else of it; a
// segment whose index is missing, empty or damaged is scanned and the
// index rewritten. Positions read from an index are checked when used: a
// record that does not verify makes a forward reader walk the segment
// instead (a reverse reader or a truncation reports ErrCorrupt).
// Consecutive segments must continue each other (offsets and chain). Of
// the segments with a valid index, only the last is scanned (its index,
// which a truncation may have made stale, is removed): records are read
// until one is invalid or out of sequence; bytes after it are zeroed. The
// first problem found — a damaged segment header, a segment that does not
// continue the previous one, a (rolled-over) segment with no valid
// record, a damaged record — cuts the log there and every later segment
// is removed, newest first. A cut
// that would lose an offset below Options.MustKeepBelow is refused with
// an error wrapping ErrCorrupt instead. A log that simply ends (zeroes or
// end of file after its last record) is not damaged, even below
// MustKeepBelow: LastDurable then says where it ends.
//
// # Durability rules
//
// Sync writes the buffered records, fsyncs (fdatasync) every segment with
// unsynced data in order — a sealed segment before its successor — and the
// directory when a segment was created since the last sync; only then does
// it advance the durable offset. Creations, renames and removals that must
// survive are followed by a directory fsync; Open fsyncs the parent of a
// directory it creates. Removals run newest first (TruncateLog, a cut) or
// oldest first (Trim) with a directory fsync after each, so a crash never
// leaves a hole; a segment's file goes before its index (an orphan index
// is removed at open). TruncateLog removes the later segments, then the
// index of the segment it cuts, then zeroes that segment after the cut and
// fsyncs it. Clear writes the CLEARING marker first, so that an
// interrupted Clear is finished by the next Open.
package wal
