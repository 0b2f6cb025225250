# poolserve: the original deployment plan's targets (docs/explanation/original-plan.md), as poolserve commands. `make help` lists them.
POOLSERVE ?= .venv/bin/poolserve
# The *-kserve targets pass --target cluster: they talk to the cluster whatever $POOLSERVE_TARGET says.
CONFIG ?= poolserve.yaml
ARGS ?=
# The helm-* targets: the chart's values are the poolserve config, so CONFIG is the values file.
HELM ?= .venv/bin/helm
RELEASE ?= poolserve
NAMESPACE ?= vllm-embeddings
NAMES ?=

.PHONY: help setup test render lint local-demo deploy-kserve-runtimes deploy-kserve-minilm \
        deploy-kserve-granite deploy-kserve-reranker deploy-kserve status-kserve wait-kserve \
        test-kserve diff-kserve delete-kserve deploy-kserve-dry-run cache-warm-kserve logs-kserve delete-kserve-all \
        chart docs docs-serve helm-template helm-install helm-test plan stop-kserve start-kserve

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-24s %s\n", $$1, $$2}'

setup: ## Create .venv with poolserve and all extras
	scripts/setup-venv.sh

test: ## Everything CI runs (installs first)
	scripts/test.sh $(ARGS)

render: setup ## Re-render manifests/kserve/ from poolserve.yaml
	$(POOLSERVE) render -c $(CONFIG)

lint: setup ## Offline checks (CRD schemas with POOLSERVE_CRD_DIR)
	$(POOLSERVE) lint -c $(CONFIG)

plan: setup ## GPU memory estimates: MIG slice / shared GPU fit, what gpu_memory_utilization does
	$(POOLSERVE) plan -c $(CONFIG) $(ARGS)

local-demo: ## Serve minilm-embedding locally with vLLM and query it
	scripts/local-demo.sh

deploy-kserve-dry-run: setup ## Validate with the API server and KServe webhooks, change nothing
	$(POOLSERVE) deploy -c $(CONFIG) --target cluster --dry-run server $(ARGS)

cache-warm-kserve: setup ## Download the models into the cache PVC (one Job per model)
	$(POOLSERVE) cache warm -c $(CONFIG) $(ARGS)

deploy-kserve-runtimes: setup ## Apply both ServingRuntimes
	$(POOLSERVE) deploy -c $(CONFIG) --target cluster --runtimes-only $(ARGS)

deploy-kserve-minilm: setup ## Deploy the MiniLM InferenceService and wait
	$(POOLSERVE) deploy -c $(CONFIG) --target cluster minilm-embedding $(ARGS)

deploy-kserve-granite: setup ## Deploy the Granite InferenceService and wait
	$(POOLSERVE) deploy -c $(CONFIG) --target cluster granite-embedding $(ARGS)

deploy-kserve-reranker: setup ## Deploy the MS-MARCO InferenceService and wait
	$(POOLSERVE) deploy -c $(CONFIG) --target cluster msmarco-reranker $(ARGS)

deploy-kserve: setup ## Deploy everything and wait
	$(POOLSERVE) deploy -c $(CONFIG) --target cluster $(ARGS)

status-kserve: setup ## InferenceService status, URLs and reasons
	$(POOLSERVE) status -c $(CONFIG) --target cluster $(ARGS)

wait-kserve: setup ## Wait until every model is ready
	$(POOLSERVE) wait -c $(CONFIG) --target cluster $(ARGS)

stop-kserve: setup ## Stop models without deleting them (NAMES="minilm-embedding ..."), as the dashboard's Stop
	$(POOLSERVE) stop -c $(CONFIG) --target cluster $(NAMES) $(ARGS)

start-kserve: setup ## Start stopped models again and wait (NAMES="minilm-embedding ...")
	$(POOLSERVE) start -c $(CONFIG) --target cluster $(NAMES) $(ARGS)

test-kserve: setup ## Verify every deployed model's outputs
	for m in $$($(POOLSERVE) explain -c $(CONFIG) -o json | .venv/bin/python -c 'import json,sys; print(" ".join(r["name"] for r in json.load(sys.stdin)))'); do \
	  $(POOLSERVE) test -c $(CONFIG) --target cluster $$m $(ARGS) || exit 1; done

diff-kserve: setup ## What deploy would change
	$(POOLSERVE) diff -c $(CONFIG) $(ARGS)

logs-kserve: setup ## vLLM log of one model: make logs-kserve NAME=minilm-embedding ARGS=--previous
	@test -n "$(NAME)" || { echo "usage: make logs-kserve NAME=<model> [ARGS=--previous]" >&2; exit 2; }
	$(POOLSERVE) logs -c $(CONFIG) --target cluster $(NAME) $(ARGS)

delete-kserve: setup ## Delete the InferenceServices (keeps runtimes)
	$(POOLSERVE) delete -c $(CONFIG) --target cluster $(ARGS)

delete-kserve-all: setup ## Delete the InferenceServices and the runtimes nothing else uses
	$(POOLSERVE) delete -c $(CONFIG) --target cluster --runtimes $(ARGS)

chart: setup ## Regenerate the chart's generated files (schema, catalog, defaults, Chart.yaml) from the source
	.venv/bin/python scripts/gen_chart.py

docs: setup ## Regenerate the generated docs (CLI, config, Helm values, catalog, exit codes) and build the site
	.venv/bin/python scripts/gen_docs.py
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict

docs-serve: setup ## Serve the docs site at http://127.0.0.1:8000 while you edit docs/
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs serve

helm-template: setup ## Render the Helm chart with CONFIG as its values (what helm-install applies)
	$(HELM) template $(RELEASE) charts/poolserve -n $(NAMESPACE) -f $(CONFIG) $(ARGS)

helm-install: setup ## helm upgrade --install the chart with CONFIG as values, then wait until every model is ready
	$(HELM) upgrade --install $(RELEASE) charts/poolserve -n $(NAMESPACE) -f $(CONFIG) $(ARGS)
	$(POOLSERVE) wait -c $(CONFIG) --set namespace=$(NAMESPACE) --target cluster

helm-test: setup ## helm test: a pod per model checks embeddings (size) and reranking (order) for real
	$(HELM) test $(RELEASE) -n $(NAMESPACE) --logs $(ARGS)
