package transport

import (
	"os"
	"runtime/debug"
	"strings"
	"sync"
)

// godebugValue returns the GODEBUG setting name as package net sees it
// (internal/godebug): from the environment's GODEBUG if it names it, else
// from the program's defaults (its go.mod godebug lines and //go:debug
// directives, which the toolchain records as DefaultGODEBUG); the last
// occurrence in each list wins; "" where neither sets it. The environment
// is read at each call: package net also follows a GODEBUG changed with
// os.Setenv.
func godebugValue(name string) string {
	if v, ok := lastSetting(os.Getenv("GODEBUG"), name); ok {
		return v
	}
	v, _ := lastSetting(defaultGODEBUG(), name)
	return v
}

// defaultGODEBUG is the program's DefaultGODEBUG build setting.
var defaultGODEBUG = sync.OnceValue(func() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "DefaultGODEBUG" {
				return s.Value
			}
		}
	}
	return ""
})

// lastSetting finds the last name=value in a comma-separated GODEBUG list.
func lastSetting(list, name string) (string, bool) {
	for list != "" {
		i := strings.LastIndexByte(list, ',')
		kv := list[i+1:]
		list = list[:max(i, 0)]
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}
