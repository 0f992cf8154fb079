package main

import (
	"fmt"
	"strings"
	"testing"
)

// --task wins; otherwise the Slurm array element picks its tasks, K at a
// time, the last element clipped to the plan.
func TestTasksToRun(t *testing.T) {
	cases := []struct {
		task      int
		elem, k   string
		n         int
		want, err string
	}{
		{task: 3, n: 4, want: "[3]"},
		{task: 4, n: 4, err: "task 4 is out of range: the sweep has 4 tasks (0..3)"},
		{task: -1, n: 4, err: "no task"},
		{task: -1, elem: "2", n: 4, want: "[2]"},
		{task: -1, elem: "1", k: "3", n: 7, want: "[3 4 5]"},
		{task: -1, elem: "2", k: "3", n: 7, want: "[6]"},
		{task: -1, elem: "3", k: "3", n: 7, err: "out of range"},
		{task: -1, elem: "x", n: 7, err: "SLURM_ARRAY_TASK_ID"},
		{task: -1, elem: "0", k: "0", n: 7, err: "CAVFORGE_TASKS_PER_ELEMENT"},
	}
	for _, tc := range cases {
		t.Setenv("SLURM_ARRAY_TASK_ID", tc.elem)
		t.Setenv("CAVFORGE_TASKS_PER_ELEMENT", tc.k)
		got, err := tasksToRun(tc.task, tc.n)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%+v: error %v, want %q", tc, err, tc.err)
		case tc.err == "" && (err != nil || fmt.Sprint(got) != tc.want):
			t.Errorf("%+v: %v, %v; want %s", tc, got, err, tc.want)
		}
	}
}
