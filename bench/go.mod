module github.com/tablefsm/tablefsm/bench

go 1.26.0

replace github.com/tablefsm/tablefsm => ../

require (
	github.com/looplab/fsm v1.0.3
	github.com/qmuntal/stateless v1.7.2
	github.com/tablefsm/tablefsm v0.0.0-00010101000000-000000000000
	pgregory.net/rapid v1.3.0
)

require github.com/goccy/go-yaml v1.19.2 // indirect
