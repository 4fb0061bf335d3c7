// Package wal is a segmented write-ahead log: the durable source of truth
// for every entry a follower acknowledges.
package wal
