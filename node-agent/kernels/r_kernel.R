# sandpit R kernel: one persistent R session (the global environment), run
# by bridge.py as `Rscript --vanilla r_kernel.R` with requests on fd 3 and
# events to fd 4 (the protocol is in bridge.py). stdout and stderr are the
# bridge's pipes, so cat(), print(), message() and system() stream as written.
# A cell is parsed whole (a syntax error runs nothing), then evaluated one
# top-level expression at a time in the global environment, as R's REPL
# does: a visible value is printed, except the last one, which is the run's
# result (its text as print() shows it; a data frame also as html and json).
local({
  reqs <- file("/dev/fd/3", open = "r", blocking = TRUE, raw = TRUE)
  evs <- file("/dev/fd/4", open = "w", blocking = TRUE, raw = TRUE)
  to_json <- function(x) jsonlite::toJSON(x, auto_unbox = TRUE, null = "null")
  send <- function(ev) {
    flush(stdout())
    flush(stderr())
    writeLines(to_json(ev), evs, useBytes = TRUE)
    flush(evs)
  }

  # Calls as R's traceback() shows them, the kernel's own frames removed.
  format_calls <- function(calls) {
    if (!length(calls)) return(character())
    lines <- vapply(calls, function(cl) paste(deparse(cl, nlines = 1L), collapse = ""), "")
    sprintf("%d: %s", rev(seq_along(lines)), lines)
  }

  # The user's frames: after the kernel's eval of the cell, before R's
  # condition machinery (stop(), .handleSimpleError, the handler).
  user_calls <- function(calls) {
    mark <- 0L
    for (i in seq_along(calls)) {
      f <- calls[[i]][[1]]
      if (is.name(f) && identical(as.character(f), ".sandpit_cell")) mark <- i
    }
    calls <- if (mark) calls[-seq_len(mark)] else list()
    fname <- function(cl) if (is.name(cl[[1]])) as.character(cl[[1]]) else ""
    while (length(calls) && fname(calls[[1]]) %in% c("withVisible", "eval")) calls <- calls[-1L]
    keep <- vapply(calls, function(cl) {
      !(fname(cl) %in% c("", ".handleSimpleError", "h", "withCallingHandlers", "doTryCatch",
                          "tryCatchOne", "tryCatchList", "tryCatch", ".signalSimpleWarning"))
    }, TRUE)
    calls[keep]
  }

  error_event <- function(e, calls) {
    name <- if (inherits(e, "interrupt")) "KeyboardInterrupt" else class(e)[1]
    msg <- if (inherits(e, "interrupt")) "interrupted" else conditionMessage(e)
    call <- conditionCall(e)
    top <- is.call(call) && identical(call[[1]], as.name("eval")) && length(calls) <= 1L
    head <- if (!is.null(call) && !top) {
      sprintf("Error in %s : %s", paste(deparse(call, nlines = 1L), collapse = ""), msg)
    } else {
      sprintf("Error: %s", msg)
    }
    tb <- format_calls(rev(calls))
    list(type = "error", name = name, value = msg,
         traceback = paste(c(head, if (length(tb)) c("Traceback:", rev(tb))), collapse = "\n"))
  }

  # A data frame as an HTML table, as pandas gives one (the first 1000 rows).
  html_table <- function(df) {
    esc <- function(x) {
      x <- gsub("&", "&amp;", x, fixed = TRUE)
      x <- gsub("<", "&lt;", x, fixed = TRUE)
      gsub(">", "&gt;", x, fixed = TRUE)
    }
    f <- format(df[seq_len(min(nrow(df), 1000L)), , drop = FALSE])
    cells <- function(tag, v) if (length(v)) paste0("<", tag, ">", esc(v), "</", tag, ">", collapse = "") else ""
    rows <- vapply(seq_len(nrow(f)), function(i) {
      paste0("<tr>", cells("th", rownames(f)[i]), cells("td", vapply(f[i, , drop = FALSE], as.character, "")),
             "</tr>")
    }, "")
    paste0('<table class="dataframe"><thead><tr><th></th>', cells("th", names(df)),
           "</tr></thead><tbody>", paste(rows, collapse = ""), "</tbody></table>")
  }

  .sandpit_cell <- function(expr) withVisible(eval(expr, globalenv()))

  run <- function(code) {
    exprs <- tryCatch(parse(text = code, keep.source = FALSE), error = function(e) e)
    if (inherits(exprs, "error")) {
      msg <- conditionMessage(exprs)
      send(list(type = "error", name = "SyntaxError", value = msg,
                traceback = paste("Error in parse:", msg)))
      return(invisible())
    }
    n <- length(exprs)
    for (i in seq_len(n)) {
      calls <- NULL
      r <- tryCatch(
        withCallingHandlers(.sandpit_cell(exprs[[i]]),
                            error = function(e) calls <<- user_calls(sys.calls())),
        error = function(e) e,
        interrupt = function(e) e)
      if (inherits(r, "condition")) {
        send(error_event(r, calls))
        return(invisible())
      }
      if (!r$visible) next
      if (i < n) {
        print(r$value)
        next
      }
      text <- paste(utils::capture.output(print(r$value)), collapse = "\n")
      ev <- list(type = "result", text = text, is_main_result = TRUE)
      if (is.data.frame(r$value) || (is.list(r$value) && !is.null(names(r$value)))) {
        j <- tryCatch(jsonlite::fromJSON(to_json(r$value), simplifyVector = FALSE),
                      error = function(e) NULL)
        if (!is.null(j)) ev$json <- j
      }
      if (is.data.frame(r$value)) {
        h <- tryCatch(html_table(r$value), error = function(e) NULL)
        if (!is.null(h)) ev$html <- h
      }
      send(ev)
    }
  }

  with_env <- function(env, f) {
    old <- Sys.getenv(names(env), unset = NA, names = TRUE)
    if (length(env)) do.call(Sys.setenv, env)
    on.exit({
      for (k in names(env)) {
        if (is.na(old[[k]])) Sys.unsetenv(k) else do.call(Sys.setenv, stats::setNames(list(old[[k]]), k))
      }
    })
    f()
  }

  options(warn = 1)  # warnings as they happen (on stderr), not after the run
  send(list(type = "ready"))
  repeat {
    line <- readLines(reqs, n = 1L, encoding = "UTF-8")
    if (!length(line)) break
    req <- jsonlite::fromJSON(line, simplifyVector = FALSE)
    env <- req$env
    if (is.null(env)) env <- list()
    tryCatch(with_env(env, function() run(req$code)), interrupt = function(e) NULL)
    send(list(type = "done"))
  }
})
