# CNN Visualization Labs: the front door.
#   make setup     create .venv, install labhelpers with the tested versions, then `make data` (idempotent)
#   make data      Fashion-MNIST on this machine: found, else Debian's package (root), else a download,
#                  else one screen that says what to run (labhelpers/getdata.py); the rest ships with pip
#   make test      unit tests + every notebook under nbval, offline, smoke profile
#   make reports   execute every lab with papermill and render HTML under reports/<profile>/
#   make class     ROSTER=roster.csv: every lab for every student (local pool, or SCHEDULER=tcp://... Dask)
#   make student   write the student editions (solutions removed) into student/
#   make grade     SUBMISSIONS=folder: autograde submitted notebooks (gradebook CSV + HTML, feedback per student)
#   make badges    rewrite the Colab badges and README lab table from pyproject's [tool.labs]
#   make pdf       print the HTML reports to PDF with a headless Chromium (when installed)
#   make lint      ruff over the package, tests and notebooks

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PROFILE ?= smoke
SEED    ?= 42
JOBS    ?= 2
TEST_JOBS ?= 2
STUDENT ?=
GROUP   ?=
LAB     ?=
INSTRUCTOR ?=
COURSE  ?=
ROSTER  ?=
SCHEDULER ?=
SUBMISSIONS ?=
TITLE_ARGS = --student "$(STUDENT)" --group "$(GROUP)" --instructor "$(INSTRUCTOR)" --course "$(COURSE)"

export PYTHONUNBUFFERED := 1

.PHONY: setup data test unit notebooks reports report class student grade badges sync pdf lint lock clean

setup: $(VENV)/.installed
	@$(BIN)/python -m labhelpers.getdata

data: $(VENV)/.installed
	@$(BIN)/python -m labhelpers.getdata

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	touch $@

# One pytest run, so CI reads one closing line: unit tests and each notebook end to end, TEST_JOBS
# processes (pytest-xdist); a notebook's cells stay together on one worker (--dist loadfile), and the files go
# out longest first (tests/conftest.py's order, which --no-loadscope-reorder keeps).
test: setup
	LABS_PROFILE=smoke $(BIN)/python -m pytest tests notebooks -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder \
	    --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider

unit: setup
	LABS_PROFILE=smoke $(BIN)/python -m pytest tests

notebooks: setup
	LABS_PROFILE=smoke $(BIN)/python -m pytest notebooks --nbval-lax --nbval-current-env --nbval-cell-timeout=900

reports: setup
	$(BIN)/python -m labhelpers.run --profile $(PROFILE) --seed $(SEED) -j $(JOBS) $(TITLE_ARGS)

# make report LAB=04: one lab only
report: setup
	@test -n "$(LAB)" || { echo "usage: make report LAB=04"; exit 2; }
	$(BIN)/python -m labhelpers.run --profile $(PROFILE) --seed $(SEED) $(TITLE_ARGS) notebooks/$(LAB)_*.ipynb

# make class ROSTER=roster.csv [SCHEDULER=tcp://host:8786]: every lab for every student of a roster
class: setup
	@test -n "$(ROSTER)" || { echo "usage: make class ROSTER=roster.csv [SCHEDULER=tcp://host:8786]"; exit 2; }
	$(BIN)/python -m labhelpers.run run --roster "$(ROSTER)" --profile $(PROFILE) --seed $(SEED) -j $(JOBS) \
	    --instructor "$(INSTRUCTOR)" --course "$(COURSE)" $(if $(SCHEDULER),--scheduler $(SCHEDULER))

student: setup
	$(BIN)/python -m labhelpers.editions write

# make grade SUBMISSIONS=folder [LAB=01] [JOBS=n] [SCHEDULER=tcp://host:8786]: run the hidden tests on every
# submitted notebook (one folder per student), into reports/grades/<assignment>/
grade: setup
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=folder [LAB=01] [JOBS=2] [SCHEDULER=tcp://host:8786]"; exit 2; }
	$(BIN)/python -m labhelpers.course.grading "$(SUBMISSIONS)" --profile $(PROFILE) -j $(JOBS) \
	    $(if $(LAB),--lab $(LAB)) $(if $(SCHEDULER),--scheduler $(SCHEDULER))

badges: setup
	$(BIN)/python -m labhelpers.colab

# after editing notebooks: shared setup cell, no outputs, fresh badges and student editions
sync: setup
	$(BIN)/python -m labhelpers.nbtools sync notebooks/*.ipynb
	$(BIN)/python -m labhelpers.colab
	$(BIN)/python -m labhelpers.editions write

pdf: setup
	$(BIN)/python -m labhelpers.pdf reports/$(PROFILE)

lint: setup
	$(BIN)/ruff check labhelpers tests scripts bench
	$(BIN)/nbqa ruff notebooks --ignore=E402,F821

lock: setup
	{ head -2 requirements.lock; $(BIN)/python -m pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf reports/smoke reports/full .pytest_cache
