# mclust's own starting partitions for the cases of benchmarks/init_benchmark.py.
# Run from the repository root after `python benchmarks/init_cases.py` (which writes the
# simulated data to benchmarks/data/):
#   Rscript benchmarks/mclust_hc_starts.R
# Needs Debian's r-base-core, r-cran-mclust and r-cran-jsonlite.  Writes
# benchmarks/fixtures/mclust_hc_starts.json: per case, the partition of mclust's default
# initialisation (Mclust()'s: hc() with mclust.options("hcModelName") on mclust.options("hcUse")
# coordinates, cut by hclass()), and the log-likelihood me() reaches from it under priorControl().
suppressPackageStartupMessages({library(mclust); library(jsonlite)})

read <- function(path) as.matrix(read.csv(path))
data_file <- function(name) {
  if (name == "faithful") return(read("bayesgmm/data/faithful.csv"))
  if (name == "iris") return(as.matrix(read.csv("bayesgmm/data/iris.csv")[, 1:4]))
  read(file.path("benchmarks/data", paste0(name, ".csv")))
}
cases <- fromJSON("benchmarks/data/cases.json", simplifyDataFrame = FALSE)
control <- emControl(tol = c(1e-12, 1e-12), itmax = c(100000L, 100000L))

out <- list()
for (case in cases) {
  X <- data_file(case$data)
  labels <- as.vector(hclass(hc(X), case$K))
  fit <- me(X, modelName = case$model, z = unmap(labels), prior = priorControl(),
            control = control)
  out[[length(out) + 1]] <- list(name = case$name, labels = labels - 1L, loglik = fit$loglik)
}
meta <- list(mclust_version = as.character(packageVersion("mclust")),
             r_version = R.version.string, hc_model = mclust.options("hcModelName"),
             hc_use = mclust.options("hcUse"), cases = out)
writeLines(toJSON(meta, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           "benchmarks/fixtures/mclust_hc_starts.json")
