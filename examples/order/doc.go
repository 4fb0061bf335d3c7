// Package order is the example lifecycle of docs/guide.md: an order in a
// web shop, generated from order.yaml. Only this file is written by hand;
// the handlers live with their users (see example_test.go).
package order

//go:generate go run github.com/tablefsm/tablefsm/gen -in order.yaml -out . -mermaid order.mmd -dot order.dot -markdown ../../docs/guide.md
