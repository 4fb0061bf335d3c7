package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
)

// SourceHash returns the hash that generated code carries of the table
// source src it was generated from, as "sha256:<hex>". Line endings do
// not count: the source is hashed with every CRLF read as LF, so that a
// checkout that converts line endings (git's core.autocrlf) does not make
// the generated code stale.
func SourceHash(src []byte) string {
	sum := sha256.Sum256(bytes.ReplaceAll(src, []byte("\r\n"), []byte("\n")))
	return "sha256:" + hex.EncodeToString(sum[:])
}
