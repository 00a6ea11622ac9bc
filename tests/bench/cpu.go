package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// busyCPU returns the seconds all CPUs of the machine have spent busy
// (everything but idle, iowait and the time the hypervisor gave to other
// guests) since boot, from /proc/stat, and false
// where that file cannot be read. A timed run's wall-clock figure moves
// with whatever else the machine does, by a third during a day on a small
// VM; the CPU seconds it took to do the same work move far less, so A/B
// comparisons of two builds read both.
func busyCPU() (float64, bool) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, false
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 6 || fields[0] != "cpu" {
		return 0, false
	}
	var busy float64
	for i, v := range fields[1:] {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, false
		}
		// idle, iowait, steal; guest and guest_nice are counted in user
		// and nice already.
		if i == 3 || i == 4 || i >= 7 {
			continue
		}
		busy += n
	}
	// USER_HZ is 100 on every Linux architecture Go supports.
	return busy / 100, true
}
