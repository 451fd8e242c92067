package poller_test

import (
	"testing"

	"github.com/hubio/hubio/internal/hubtest"
)

// TestDocNamesEveryFile keeps the file map of the package doc true.
func TestDocNamesEveryFile(t *testing.T) { hubtest.CheckFileMap(t, ".", "doc.go") }
