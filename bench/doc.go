// Package bench holds the benchmarks that compare tablefsm with other
// libraries in the same run. It is its own module so that comparison-only
// dependencies never enter the library's go.mod.
package bench
