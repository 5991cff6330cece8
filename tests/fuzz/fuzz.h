/*
 * Helpers shared by the libFuzzer targets: invariant checks that abort (so
 * libFuzzer saves the input), a reader for the few bytes of an input that
 * choose parameters, and a small deterministic PRNG for chunk sizes and
 * handler decisions.
 */
#ifndef SMTPD_FUZZ_H
#define SMTPD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of the code under test: abort, so that libFuzzer keeps the
 * input as a crash and prints the stack. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Bytes of the input, taken from the front. Past the end, zeros. */
struct fuzz_in {
    const uint8_t *p;
    size_t n;
};

static inline uint8_t fuzz_byte(struct fuzz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint16_t fuzz_u16(struct fuzz_in *in)
{
    uint16_t hi = fuzz_byte(in);
    return (uint16_t)(hi << 8 | fuzz_byte(in));
}

/* xorshift32: decisions that are a pure function of the input. */
struct fuzz_rng {
    uint32_t s;
};

static inline uint32_t fuzz_rand(struct fuzz_rng *r)
{
    uint32_t x = r->s ? r->s : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    r->s = x;
    return x;
}

/* 0 .. n-1 */
static inline uint32_t fuzz_below(struct fuzz_rng *r, uint32_t n)
{
    return n ? fuzz_rand(r) % n : 0;
}

/*
 * Chunk sizes read from the input: a count byte k (0..15) then k size bytes
 * (each v gives a chunk of v + 1 bytes), used in turn; k == 0 means one
 * chunk of everything.
 */
struct fuzz_chunks {
    const uint8_t *sizes;
    size_t k, i;
};

static inline void fuzz_chunks_read(struct fuzz_chunks *c, struct fuzz_in *in)
{
    c->k = fuzz_byte(in) & 15;
    if (c->k > in->n)
        c->k = in->n;
    c->sizes = in->p;
    c->i = 0;
    in->p += c->k;
    in->n -= c->k;
}

static inline size_t fuzz_chunk_next(struct fuzz_chunks *c, size_t remaining)
{
    if (c->k == 0)
        return remaining;
    size_t n = (size_t)c->sizes[c->i++ % c->k] + 1;
    return n < remaining ? n : remaining;
}

#endif
