# The two commands of the README, plus a few conveniences. Every target sets itself up first.
.PHONY: demo test down setup

setup:
	@bash scripts/bootstrap.sh

demo: setup
	.venv/bin/newsrec demo

test: setup
	.venv/bin/python -m pytest -q

down:
	.venv/bin/newsrec down
