// Package order is the example lifecycle of docs/guide.md: an order in a
// web shop, generated from order.yaml. Written by hand: order.yaml (the
// table), this file, example_test.go (the handlers and an example, as the
// handlers live with their users) and testdata/broken.yaml; the rest
// (order_fsm.go, order_fsm_test.go, order.mmd, order.dot) is generated.
package order

//go:generate go run github.com/tablefsm/tablefsm/gen -in order.yaml -out . -mermaid order.mmd -dot order.dot -markdown ../../docs/guide.md
