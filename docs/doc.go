// Package docs holds the project's documentation. Its only code is a test
// of guide.md: every ```go block must be a run of whole lines of an
// example_test.go file or of a Go file under examples/ (generated ones
// included), every ```yaml block of a YAML file of the module, and the
// generator diagnostics and followerd --help it shows must be what they
// print today. Other blocks (command output, test runs) are not checked.
package docs
