// Package follower is the follower replica of one shard of a replicated
// log, on the lifecycle generated from transitions.yaml.
package follower

//go:generate go run ../gen -in ../transitions.yaml -out . -mermaid ../docs/lifecycle.mmd -dot ../docs/lifecycle.dot -markdown ../README.md
