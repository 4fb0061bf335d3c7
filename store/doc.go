// Package store keeps a shard's applied state in Pebble: the term, the
// commit point, the data the state machine wrote, and crash-safe snapshots.
//
// # What it holds
//
// A Store is one Pebble database per shard directory. Beside the state
// machine's data it keeps reserved records: the term and its options
// (SetTerm, synced before it returns), the id of the last applied entry
// (Commit), and, after a snapshot install, a log-reset record
// (LogResetPending). Reserved records live under the key prefix 0x00 and
// every user key is stored behind the prefix 0x01, so no write of a state
// machine can reach them.
//
// # Applying
//
// Apply runs an entry through the StateMachine (by default KV, which
// decodes a kvpb.WriteBatch) into a Writer, and commits the writes and the
// entry's id in one Pebble batch: a crash keeps an entry whole or not at
// all, and the commit id says which. Entries come in order: offset
// commit+1, else ErrOutOfOrder. The batch is not synced (the replicated
// log is the source of truth); Sync makes everything applied so far
// durable and returns the durable commit, which DurableCommit remembers.
// The log may be trimmed up to the durable commit, never past it: after a
// crash the commit may be anywhere between the durable commit and the last
// applied entry, and the entries after it are applied again from the log.
//
// # Snapshots
//
// Snapshot cuts a Pebble checkpoint (a consistent point-in-time copy,
// carrying commit id, term and options in its reserved records) and reads
// its files out as Chunks {Name, Index, Count, Content}, file after file.
// A Loader writes incoming chunks into a staging directory, checks the
// sequence (each file's chunks 0..Count-1 in order, no file twice, safe
// names, an optional size limit), and Finish opens the staged files as a
// store that must carry a term and a commit id. Install then swaps it in.
// A broken sequence or staged store is ErrInvalidSnapshot; any other error
// is an I/O failure, returned wrapped. Either way the loader is aborted:
// its staged files are removed and the live database was never touched.
//
// # Layout and the swap
//
//	<dir>/LOCK               held while a Store has dir open
//	<dir>/CURRENT            "db-NNNNNN\n": the live database
//	<dir>/db-NNNNNN/         Pebble databases; any that CURRENT does not
//	                         name is a staging (or replaced) one
//	<dir>/checkpoint-NNNNNN/ a snapshot being read out
//	<dir>/CURRENT.tmp        the marker being written
//
// Install writes into the staged database, synced, the term (the highest
// of the caller's minimum, the staged and the live term; the staged
// options are kept) and the log-reset record carrying the snapshot's
// commit id. Then it writes the new marker to CURRENT.tmp, syncs it,
// renames it over CURRENT and syncs the directory. The rename is the
// commit point: before it, CURRENT names the old database, complete; after
// it, the new one, complete (every file of it was synced before). Open
// reads CURRENT and removes everything else (staging databases, a
// replaced database, checkpoints, CURRENT.tmp), which rolls an interrupted
// install forward or back.
//
// # The log-reset protocol
//
// A store installed from a snapshot holds state the owner's log does not
// lead to: the log must be cleared, its head set to the snapshot's commit
// id. The log-reset record says so durably: after Install, or after Open
// when LogResetPending reports true, the owner clears its log, then calls
// ClearLogReset (synced), and only then appends again. A crash in between
// leaves the record, and the owner clears the log again.
//
// # Concurrency
//
// One goroutine applies. Any goroutine may at the same time read (Term,
// TermOptions, Commit, DurableCommit, LogResetPending: a small mutex;
// Get, Scan: Pebble reads), Sync, SetTerm, take snapshots and load one.
// Install must not run concurrently with Apply (the caller serializes
// them). Close and Delete wait for running operations; afterwards every
// method returns ErrClosed (Close returns nil).
package store
