package telemetry

// HubsForTest returns how many hubs t holds.
func HubsForTest(t *Telemetry) int {
	t.hubs.mu.Lock()
	defer t.hubs.mu.Unlock()
	return len(t.hubs.hubs)
}
