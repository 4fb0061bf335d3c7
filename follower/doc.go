// Package follower is the follower replica of one shard of a replicated
// log, on the lifecycle generated from transitions.yaml.
//
// The machine the generator writes from that table is unexported: a
// Follower drives its own. Code outside the package uses Follower, with
// State and Event to read what it does, LifecycleTable to describe the
// table, and Config.Observer to watch every step.
package follower

//go:generate go run ../gen -in ../transitions.yaml -out . -mermaid ../docs/lifecycle.mmd -dot ../docs/lifecycle.dot -markdown ../README.md
