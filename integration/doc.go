// Package integration holds Parley's end-to-end tests: each starts real
// homeservers on loopback with real SQLite files, and talks to them over
// HTTP and WebSockets, with real Signal sessions where messages are
// encrypted. It has no non-test code besides this comment.
package integration
