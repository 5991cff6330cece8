/*
 * How the program keeps its resident memory at what it is using now rather
 * than at the highest it ever used. glibc's malloc hands big buffers back to
 * the kernel only when they were mmapped, raises its mmap threshold each time
 * such a buffer is freed (so later messages land in the heap), and returns
 * free heap pages only from the top of the heap. Under mixed load (big
 * messages, hostile clients, evbuffer chains) the heap's resident size then
 * creeps up to its worst moment and stays there.
 *
 * This is the program's business, not the library's: the allocator is
 * process-wide, and an application embedding libsmtpd may tune it otherwise.
 */
#ifndef SMTPD_CLI_MEMORY_H
#define SMTPD_CLI_MEMORY_H

struct event_base;
struct memory;

/** Fix malloc's mmap threshold and start a timer on @p base that gives free
 *  heap pages back to the kernel every @p seconds (0: no timer). @return the
 *  timer (free it with memory_free()), or NULL where malloc has no such
 *  knobs, with no timer, or when the timer could not be made (the program
 *  runs on regardless). */
struct memory *memory_start(struct event_base *base, unsigned seconds);

/** Stop the timer; NULL is allowed. */
void memory_free(struct memory *m);

#endif
