// Package fsm is the runtime and the table model of tablefsm's explicit
// finite-state machines.
//
// A lifecycle is declared as a table in YAML (see docs/table.md): states,
// events with typed payloads, guards, actions, errors and rows. [Load]
// parses a table, keeping the position of every name, and validates it,
// reporting every problem at once as "file:line:col: message" (columns
// in bytes, as Go tools count them). The generator in gen/ turns a valid
// [Table] into Go code, diagrams and tests.
//
// Generated machines use the small types of this package: [Refusal], what
// the error returned when an event is refused ([Refused]) tells, and
// [Observer], the hook that sees every step a machine takes.
//
// Semantics of a table, shared by the generator, the diagrams and the
// test oracle in fsmtest:
//
//   - Rows are grouped by (state, event) and tried top to bottom. A row is
//     taken when all of its guards hold; guards are evaluated in the order
//     written and evaluation stops at the first that fails.
//   - A taken row either moves to a state (running its actions first),
//     stays (an internal row: runs its actions, keeps the state), does
//     nothing (a no-op row), or refuses with a declared error.
//   - When no row of a non-empty group is taken, the event is refused with
//     the error of the first guard that failed.
//   - An empty (state, event) cell follows the unhandled policy of the state,
//     or else of the table: refuse with an error, or ignore.
//   - When an action fails, the remaining actions are skipped, the state is
//     left where it was and the action's error is returned unchanged.
package fsm
