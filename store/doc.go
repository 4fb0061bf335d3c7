// Package store keeps a shard's applied state in Pebble: the term, the
// commit point, the data the state machine wrote, and crash-safe snapshots.
package store
