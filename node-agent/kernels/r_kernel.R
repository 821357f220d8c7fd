# sandpit R kernel: one persistent R session (the global environment), run
# by bridge.py as `Rscript --vanilla r_kernel.R` with requests on fd 3 and
# events to fd 4 (the protocol is in bridge.py). stdout and stderr are the
# bridge's pipes, so cat(), print(), message() and system() stream as written.
# A cell is parsed whole (a syntax error runs nothing), then evaluated one
# top-level expression at a time in the global environment, as R's REPL
# does: a visible value is printed, except the last one, which is the run's
# result (its text as print() shows it; a data frame also as html and json).
# Plots: R's default device is a png file per page in a private directory;
# after each run the pages drawn are image/png results, as matplotlib
# figures are in python.py. display() (IRdisplay's name, in E2B's R kernel)
# emits a value as a result that is not the main one.
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

  # The text, html and json of a value, as the main result has them.
  bundle <- function(value) {
    ev <- list(text = paste(utils::capture.output(print(value)), collapse = "\n"))
    if (is.data.frame(value) || (is.list(value) && !is.null(names(value)))) {
      j <- tryCatch(jsonlite::fromJSON(to_json(value), simplifyVector = FALSE),
                    error = function(e) NULL)
      if (!is.null(j)) ev$json <- j
    }
    if (is.data.frame(value)) {
      h <- tryCatch(html_table(value), error = function(e) NULL)
      if (!is.null(h)) ev$html <- h
    }
    ev
  }
  result <- function(ev, main) send(c(list(type = "result"), ev, list(is_main_result = main)))
  png_base64 <- function(file) jsonlite::base64_enc(readBin(file, "raw", file.info(file)$size))

  # Plots: a device opened because code draws with none open is a png file
  # per page (plot-<run>-<device>-<page>.png); flush_plots() closes those
  # devices at the run's end and sends their pages. A device the code opened
  # itself (png("f.png"), pdf()) is left alone.
  plot_dir <- tempfile("sandpit-r-plots-")
  dir.create(plot_dir, mode = "0700")
  plots <- new.env()
  plots$run <- 0L
  plots$devices <- integer()
  options(device = function(...) {
    k <- length(plots$devices) + 1L
    grDevices::png(file.path(plot_dir, sprintf("plot-%05d-%03d-%%03d.png", plots$run, k)),
                   width = 672, height = 480, res = 96)
    plots$devices <- c(plots$devices, grDevices::dev.cur())
  })
  flush_plots <- function() {
    for (d in plots$devices) if (d %in% grDevices::dev.list()) grDevices::dev.off(d)
    plots$devices <- integer()
    files <- sort(list.files(plot_dir, pattern = "^plot-.*[.]png$", full.names = TRUE))
    for (f in files) {
      b <- tryCatch(png_base64(f), error = function(e) NULL)
      unlink(f)
      if (!is.null(b)) result(list(text = "<plot 672x480>", png = b), FALSE)
    }
  }

  # display(x, ...): each value as a result (text, and html and json as for
  # the main result); display_html(), display_markdown(), display_png(file)
  # as IRdisplay has them. In an attached environment, not the global one.
  api <- new.env()
  api$display <- function(...) {
    for (v in list(...)) result(bundle(v), FALSE)
    invisible()
  }
  api$display_html <- function(html) {
    result(list(text = paste(html, collapse = "\n"), html = paste(html, collapse = "\n")), FALSE)
    invisible()
  }
  api$display_markdown <- function(md) {
    result(list(text = paste(md, collapse = "\n"), markdown = paste(md, collapse = "\n")), FALSE)
    invisible()
  }
  api$display_png <- function(file) {
    result(list(text = basename(file), png = png_base64(file)), FALSE)
    invisible()
  }
  attach(api, name = "sandpit:display", warn.conflicts = FALSE)

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
      result(bundle(r$value), TRUE)
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
    plots$run <- plots$run + 1L
    tryCatch(with_env(env, function() run(req$code)), interrupt = function(e) NULL)
    tryCatch(flush_plots(), error = function(e) message("sandpit: plots: ", conditionMessage(e)),
             interrupt = function(e) NULL)
    send(list(type = "done"))
  }
})
