# pyner: every target sets up what it needs (scripts/bootstrap builds the Python environment once
# per dependency spec; Maven and sbt fill ~/.m2 and the sbt caches once).
SHELL := /bin/bash
export DJL_OFFLINE := true
export OPT_OUT_TRACKING := true
DEMO := artifacts/demo
SENTENCES := "Angela Merkel met Emmanuel Macron in Berlin on Tuesday to discuss the European Union budget." \
             "Apple shares rose after Tim Cook spoke in Cupertino, California." \
             "The United Nations said aid convoys had reached Aleppo, Syria, for the first time since March."

.PHONY: demo env test test-python jvm jvm-release test-jvm test-scala test-large bench bench-quick clean

## demo: set up, build + package the embedded demo model, and recognize entities in news sentences
demo: env
	@test -f $(DEMO)/pyner.json || .venv/bin/pyner package -o $(DEMO)
	.venv/bin/pyner verify $(DEMO)
	.venv/bin/pyner predict $(DEMO) --format text $(SENTENCES)

env:
	@scripts/bootstrap >/dev/null

## test: set up everything and run all tests (Python, JVM parity, Scala sample)
test: env jvm jvm-release
	.venv/bin/python -m pytest -q tests
	sbt-sample/sbtw "+test"

test-python: env
	.venv/bin/python -m pytest -q tests

## jvm: build the Java library (runs its JUnit tests) and install it into ~/.m2
jvm: env
	cd jvm_bridge && mvn -B -q install

## jvm-release: stage dev.pyner:pyner-jvm (jar, sources, javadoc, POM, checksums) into dist/maven/ as a
## remote Maven repository, and prove it (one version, reproducible, a fresh consumer resolves it)
jvm-release: env
	jvm_bridge/scripts/release

## test-scala: the sample on Spark 3.5 / Scala 2.12 and Spark 4.1 / Scala 2.13, pyner-jvm from dist/maven
test-scala: env jvm jvm-release
	sbt-sample/sbtw "+test"

## test-large: the seed's ~2 GB model class (XLM-RoBERTa-large and BERT-large shapes by default; also
## roberta-large, deberta-v3-large: --shape; random weights) through every path, measured (package all
## precisions, verify, JVM parity, plain DJL, sidecar, Spark on 2 executor JVMs, 256-token bench).
## Not part of `make test` (about an hour on 2 cores); results in bench/results/large/.
test-large: env jvm jvm-release
	.venv/bin/python scripts/test-large

bench: env
	.venv/bin/pyner bench

bench-quick: env
	.venv/bin/pyner bench --quick

clean:
	rm -rf artifacts bench/results jvm_bridge/target sbt-sample/target
