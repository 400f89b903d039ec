# The two commands of the README. Both create the virtualenv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint venv clean messages

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	bin/run-dev

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

# makemessages updates our catalogue (locale/) only; compilemessages compiles it and
# locale_thirdparty/ (the third-party apps' zh-Hant, edited by hand: README).
messages: $(STAMP)
	$(BIN)/python manage.py makemessages -l zh_Hant --ignore=.venv --ignore=var
	$(BIN)/python manage.py compilemessages -l zh_Hant --ignore=.venv

clean:
	rm -rf var
