package decimalflag

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"
)

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		i64  int64
		uint uint
		err  string // for the signed flags; "" when accepted
		uerr string // for the unsigned flag
	}{
		{arg: "0"},
		{arg: "-0", err: "-0 is written 0", uerr: "must not be negative"},
		{arg: "7", i64: 7, uint: 7},
		{arg: "1000", i64: 1000, uint: 1000},
		{arg: "-1", i64: -1, uerr: "must not be negative"},
		{arg: "9223372036854775807", i64: 1<<63 - 1, uint: 1<<63 - 1},
		{arg: "-9223372036854775808", i64: -1 << 63, uerr: "must not be negative"},
		{arg: "9223372036854775808", err: "value out of range", uint: 1 << 63},
		{arg: "18446744073709551616", err: "value out of range", uerr: "value out of range"},
		{arg: "010", err: "no leading zeros", uerr: "no leading zeros"},
		{arg: "-010", err: "no leading zeros", uerr: "must not be negative"},
		{arg: "00", err: "no leading zeros", uerr: "no leading zeros"},
		{arg: "0x10", err: "not a decimal number", uerr: "not a decimal number"},
		{arg: "0o7", err: "not a decimal number", uerr: "not a decimal number"},
		{arg: "0b1", err: "not a decimal number", uerr: "not a decimal number"},
		{arg: "1_000", err: "not a decimal number", uerr: "not a decimal number"},
		{arg: "+1", err: "not a decimal number", uerr: "not a decimal number"},
		{arg: " 1", err: "not a decimal number", uerr: "not a decimal number"},
		{arg: "1 ", err: "not a decimal number", uerr: "not a decimal number"},
		{arg: "", err: "not a decimal number", uerr: "not a decimal number"},
		{arg: "-", err: "not a decimal number", uerr: "must not be negative"},
		{arg: "1e3", err: "not a decimal number", uerr: "not a decimal number"},
		{arg: "١", err: "not a decimal number", uerr: "not a decimal number"}, // an Arabic-Indic digit
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		i64 := Int64(fs, "i64", 42, "")
		i := Int(fs, "i", 42, "")
		u := Uint(fs, "u", 42, "")
		for _, name := range []string{"i64", "i", "u"} {
			want := tc.err
			if name == "u" {
				want = tc.uerr
			}
			err := fs.Parse([]string{"-" + name + "=" + tc.arg})
			if want == "" {
				if err != nil {
					t.Errorf("-%s=%q: %v", name, tc.arg, err)
				}
				continue
			}
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "-"+name) {
				t.Errorf("-%s=%q: error %v, want one naming the flag and saying %q", name, tc.arg, err, want)
			}
		}
		// A refused value leaves the flag as it was.
		wantI64, wantU := tc.i64, tc.uint
		if tc.err != "" {
			wantI64 = 42
		}
		if tc.uerr != "" {
			wantU = 42
		}
		wantI := int(wantI64)
		if *i64 != wantI64 || *i != wantI || *u != wantU {
			t.Errorf("%q: -i64 %d -i %d -u %d, want %d %d %d", tc.arg, *i64, *i, *u, wantI64, wantI, wantU)
		}
	}
}

func TestDefaultsInHelp(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var out bytes.Buffer
	fs.SetOutput(&out)
	Int64(fs, "term", -1, "the `term`")
	Int(fs, "window", 1000, "`entries` in flight")
	Uint(fs, "streams", 0, "`streams` (0: no limit)")
	var shard int64
	Int64Var(fs, &shard, "shard", 0, "the shard `id`")
	fs.PrintDefaults()
	for _, want := range []string{"-term term\n", "(default -1)", "-window entries\n", "(default 1000)", "-shard id\n", "-streams streams\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Count(out.String(), "default") != 2 {
		t.Errorf("help names a default for a zero value:\n%s", out.String())
	}
}
