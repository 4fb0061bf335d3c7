// Package decimalflag defines integer command-line flags that take plain
// decimal numbers only.
//
// The flag package's integer flags read their values as Go literals:
// "010" is 8, "0x10" is 16 and "1_000" is 1000. A shard "010" or a term
// "0x10" given by an operator is far more likely a slip than a wish, and
// read as another number it would act on another shard or term. These
// flags refuse every such spelling, with a message saying why; they
// accept the digits of a number without leading zeros, as the wire
// protocol spells shard ids, and a minus sign before a signed flag's
// negative numbers (not before 0).
//
// Help shows a flag's value as "value" unless its usage names it in back
// quotes, as the flag package's own integer flags show "int".
package decimalflag

import (
	"errors"
	"flag"
	"strconv"
)

// Int64 defines an int64 flag on fs, as fs.Int64 does, that takes
// decimal numbers only.
func Int64(fs *flag.FlagSet, name string, value int64, usage string) *int64 {
	p := new(int64)
	Int64Var(fs, p, name, value, usage)
	return p
}

// Int64Var defines an int64 flag on fs, as fs.Int64Var does, that takes
// decimal numbers only.
func Int64Var(fs *flag.FlagSet, p *int64, name string, value int64, usage string) {
	*p = value
	fs.Var((*int64Value)(p), name, usage)
}

// Int defines an int flag on fs, as fs.Int does, that takes decimal
// numbers only.
func Int(fs *flag.FlagSet, name string, value int, usage string) *int {
	p := new(int)
	IntVar(fs, p, name, value, usage)
	return p
}

// IntVar defines an int flag on fs, as fs.IntVar does, that takes
// decimal numbers only.
func IntVar(fs *flag.FlagSet, p *int, name string, value int, usage string) {
	*p = value
	fs.Var((*intValue)(p), name, usage)
}

// Uint defines a uint flag on fs, as fs.Uint does, that takes decimal
// numbers only.
func Uint(fs *flag.FlagSet, name string, value uint, usage string) *uint {
	p := new(uint)
	*p = value
	fs.Var((*uintValue)(p), name, usage)
	return p
}

type int64Value int64

func (v *int64Value) Set(s string) error {
	n, err := parseSigned(s, 64)
	if err == nil {
		*v = int64Value(n)
	}
	return err
}

func (v *int64Value) String() string { return strconv.FormatInt(int64(*v), 10) }

type intValue int

func (v *intValue) Set(s string) error {
	n, err := parseSigned(s, strconv.IntSize)
	if err == nil {
		*v = intValue(n)
	}
	return err
}

func (v *intValue) String() string { return strconv.Itoa(int(*v)) }

type uintValue uint

func (v *uintValue) Set(s string) error {
	if len(s) > 0 && s[0] == '-' {
		return errNegative
	}
	if err := checkSpelling(s, false); err != nil {
		return err
	}
	n, err := strconv.ParseUint(s, 10, strconv.IntSize)
	if err != nil {
		return errRange
	}
	*v = uintValue(n)
	return nil
}

func (v *uintValue) String() string { return strconv.FormatUint(uint64(*v), 10) }

var (
	errSyntax    = errors.New("not a decimal number")
	errLeading0  = errors.New("a decimal number has no leading zeros")
	errRange     = errors.New("value out of range")
	errNegative  = errors.New("must not be negative")
	errMinusZero = errors.New("-0 is written 0")
)

// parseSigned reads s as a signed decimal integer of the given bit size.
func parseSigned(s string, bits int) (int64, error) {
	if err := checkSpelling(s, true); err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, bits)
	if err != nil {
		return 0, errRange
	}
	return n, nil
}

// checkSpelling accepts an optional minus sign (when signed) followed by
// "0" or by digits that do not start with 0.
func checkSpelling(s string, signed bool) error {
	digits := s
	if signed && len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if digits == "" {
		return errSyntax
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return errSyntax
		}
	}
	if len(digits) > 1 && digits[0] == '0' {
		return errLeading0
	}
	if digits == "0" && len(s) > 1 {
		return errMinusZero
	}
	return nil
}
