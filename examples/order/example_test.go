package order_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/tablefsm/tablefsm/examples/order"
	"github.com/tablefsm/tablefsm/fsm"
)

// Shop is the hand-written half of the Order machine: the facts its
// guards read and the effects its actions have.
type Shop struct {
	Stock map[string]int // items on the shelf, by SKU
	Price int64          // cents per item

	reserved map[string]int // items taken from the shelf for this order
	paid     int64
	tracking string
}

// The compiler checks that Shop has every guard and action of the table.
var _ order.OrderHandlers = (*Shop)(nil)

// Guards read the shop and the event's payload; they change nothing.

func (s *Shop) InStock(sku string, quantity int) bool { return s.Stock[sku] >= quantity }
func (s *Shop) HasItems() bool                        { return len(s.reserved) > 0 }
func (s *Shop) PaysTotal(cents int64) bool            { return cents >= s.total() }

// Actions do the work. An action that fails stops its row: the later
// actions do not run, the state does not change, and the caller gets the
// action's error as is.

func (s *Shop) Reserve(sku string, quantity int) error {
	if s.reserved == nil {
		s.reserved = map[string]int{}
	}
	s.Stock[sku] -= quantity
	s.reserved[sku] += quantity
	return nil
}

func (s *Shop) Charge(cents int64) error {
	s.paid = cents
	return nil
}

func (s *Shop) Track(tracking string, at time.Time) error {
	s.tracking = tracking
	return nil
}

func (s *Shop) Refund() error {
	s.paid = 0 // a real shop calls its payment provider here
	return nil
}

func (s *Shop) Restock() error {
	for sku, n := range s.reserved {
		s.Stock[sku] += n
	}
	s.reserved = nil
	return nil
}

func (s *Shop) total() int64 {
	var n int64
	for _, q := range s.reserved {
		n += int64(q)
	}
	return n * s.Price
}

// Example runs an order through the machine generated from order.yaml,
// with Shop as its handlers and an observer printing every step.
func Example() {
	shop := &Shop{Stock: map[string]int{"mug": 3}, Price: 1200}
	o := order.NewOrder(shop)
	o.SetObserver(fsm.ObserverFunc(func(s fsm.Step) {
		if s.Err != nil {
			fmt.Printf("  %s --%s--> refused\n", s.From, s.Event)
			return
		}
		fmt.Printf("  %s --%s--> %s\n", s.From, s.Event, s.To)
	}))

	err := o.AddItem("mug", 5)
	fmt.Println(err)
	fmt.Println("out of stock:", errors.Is(err, order.ErrOutOfStock))

	if err := o.AddItem("mug", 2); err != nil {
		fmt.Println(err)
	}
	if err := o.Pay(1000); errors.Is(err, order.ErrUnderpaid) {
		fmt.Println("underpaid, state", o.State())
	}
	for _, err := range []error{
		o.Pay(2400),
		o.Pay(2400), // a duplicate confirmation: a no-op row
		o.Ship("1Z999", time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)),
	} {
		if err != nil {
			fmt.Println(err)
		}
	}
	fmt.Println(o.Cancel())
	fmt.Println(o.State(), "paid", shop.paid, "tracking", shop.tracking, "stock", shop.Stock["mug"])
	// Output:
	//   Open --AddItem--> refused
	// Order: AddItem refused in Open (guard InStock failed): order: out of stock
	// out of stock: true
	//   Open --AddItem--> Open
	//   Open --Pay--> refused
	// underpaid, state Open
	//   Open --Pay--> Paid
	//   Paid --Pay--> Paid
	//   Paid --Ship--> Shipped
	//   Shipped --Cancel--> refused
	// Order: Cancel refused in Shipped: order: already shipped
	// Shipped paid 2400 tracking 1Z999 stock 1
}
