// Package leader drives follower nodes as a shard leader would: it fences
// and truncates them, streams entries through a bounded window of
// unacknowledged entries with per-entry or cumulative acks, measures ack
// latency, sends snapshots, and reads applied values back through the
// Inspect service. The replicate command, the demo, the benchmarks and
// the end-to-end tests are built on it.
//
// It checks what the follower sends back against the protocol (SPEC
// §2.3): an ack for an entry never sent, an ack out of order in per-entry
// mode, or a decreasing ack in cumulative mode is an error, so every run
// is also a conformance check.
package leader
