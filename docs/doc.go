// Package docs holds the project's documentation. Its only code is a test:
// every snippet of guide.md is checked against the examples and files it
// was taken from, so the guide cannot drift from code that compiles and
// runs.
package docs
