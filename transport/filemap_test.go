package transport_test

import (
	"testing"

	"github.com/hubio/hubio/internal/hubtest"
)

// TestDocNamesEveryFile keeps the file map of docs/transport.md true.
func TestDocNamesEveryFile(t *testing.T) {
	hubtest.CheckFileMap(t, ".", "../docs/transport.md")
}
