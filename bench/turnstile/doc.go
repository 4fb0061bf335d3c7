// Package turnstile is the machine the FSM benchmarks fire: generated
// from turnstile.yaml, with a trivial hand-written Meter.
package turnstile

//go:generate go run github.com/tablefsm/tablefsm/gen -in turnstile.yaml -out .

// Meter counts coins and passages.
type Meter struct {
	Fare     int
	Cents    int
	Passages int
	Jammed   bool
}

var _ TurnstileHandlers = (*Meter)(nil)

func (m *Meter) EnoughMoney(cents int) bool { return cents >= m.Fare }
func (m *Meter) ArmFree() bool              { return !m.Jammed }

func (m *Meter) Collect(cents int) error {
	m.Cents += cents
	return nil
}

func (m *Meter) Count() error {
	m.Passages++
	return nil
}
