/* A thread that calls a function every period until stopped: the operator's
 * periodic resyncs. */
#pragma once

typedef struct Ticker Ticker;

/* Calls fn(userdata) every period_ms (> 0), the first time one period after
 * the start, on a thread of its own; waits run on CLOCK_MONOTONIC. */
int ticker_start(long period_ms, void (*fn)(void *userdata), void *userdata, Ticker **ret);
/* Stops the ticker (a call of fn under way finishes first) and frees it;
 * NULL is a no-op. */
void ticker_stop(Ticker *t);
