// Package follower is the follower replica of one shard of a replicated
// log, on the lifecycle generated from transitions.yaml.
//
// Lifecycle, NewLifecycle and LifecycleHandlers are the machine the
// generator writes from that table. A Follower drives its own, and the
// handlers take the follower's internal types: code outside the package
// uses Follower, with State and Event to read what it does, LifecycleTable
// to describe the table, and Config.Observer to watch every step.
package follower

//go:generate go run ../gen -in ../transitions.yaml -out . -mermaid ../docs/lifecycle.mmd -dot ../docs/lifecycle.dot -markdown ../README.md
