// Package sysstat reads what the benchmark commands report about their
// processes and the machine (CPU time of a process, the load average) and
// raises the open-file limit that many conns need. Off Linux it reports
// nothing: zero and "?".
package sysstat
