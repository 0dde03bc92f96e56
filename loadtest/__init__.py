"""Load tests and benchmark runners: open-loop load generation, `newsrec bench ...`, reports and plots."""
