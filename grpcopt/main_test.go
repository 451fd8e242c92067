package grpcopt_test

import (
	"testing"

	"github.com/hubio/hubio/internal/hubtest"
)

func TestMain(m *testing.M) { hubtest.VerifyTestMain(m) }
