/* A C program that runs a model compiled by `dync compile --emit obj` (or `--emit so`) on raw
 * input files and writes raw output files: the shape of an application embedding dync.
 *
 * Build (the model's C name is the prefix of its symbols, e.g. `dy_mobile`):
 *   dync compile model.onnx --emit obj -o dy_mobile.o          # also writes dy_mobile.h
 *   cc -std=c11 -O2 -I. -DDYNC_MODEL=dy_mobile -DDYNC_HEADER='"dy_mobile.h"' \
 *      examples/embed_in_c/harness.c dy_mobile.o -lm -o harness
 * Cross (aarch64, run under qemu-aarch64):
 *   dync compile model.onnx --emit obj --target aarch64-unknown-linux-gnu -o dy_mobile.o
 *   aarch64-linux-gnu-gcc -static -std=c11 -O2 ... harness.c dy_mobile.o -lm -o harness
 *
 * Usage: harness IN_0 ... IN_{n-1} OUT_0 ... OUT_{m-1}
 *   Each IN_i holds exactly the row-major bytes of input i (the model's dtype and shape, native
 *   byte order); each OUT_j receives output j's bytes. Prints the model's signature with
 *   `harness --info`. Exit status 0 on success, 1 on an error (named on stderr), 2 on bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef DYNC_MODEL
#error "define DYNC_MODEL as the model's C name, e.g. -DDYNC_MODEL=dy_mobile"
#endif
#ifndef DYNC_HEADER
#error "define DYNC_HEADER as the model's header, e.g. -DDYNC_HEADER='\"dy_mobile.h\"'"
#endif
#include DYNC_HEADER

#define DYNC_CAT3(a, b, c) a##b##c
#define DYNC_XCAT3(a, b, c) DYNC_CAT3(a, b, c)
#define DYNC(x) DYNC_XCAT3(dync_, DYNC_MODEL, _##x)
#define DYNC_HANDLE DYNC_XCAT3(dync_, DYNC_MODEL, )

static const char* dtype_name(uint32_t d) {
    switch (d) {
    case DYNC_F32: return "f32";
    case DYNC_I64: return "i64";
    case DYNC_I32: return "i32";
    case DYNC_BOOL: return "bool";
    default: return "?";
    }
}

static void print_tensor(const char* what, size_t i, const dync_tensor_desc* t) {
    printf("%s %zu \"%s\": %s[", what, i, t->name, dtype_name(t->dtype));
    for (uint32_t k = 0; k < t->rank; k++) printf(k ? ",%lld" : "%lld", (long long)t->shape[k]);
    printf("] (%llu bytes)\n", (unsigned long long)t->bytes);
}

/* Reads `path` into a fresh buffer of exactly `bytes` bytes; NULL (after a message) otherwise. */
static void* read_exact(const char* path, const dync_tensor_desc* t) {
    FILE* f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "error: input \"%s\": cannot open %s\n", t->name, path);
        return NULL;
    }
    void* buf = malloc(t->bytes ? t->bytes : 1);
    size_t got = buf ? fread(buf, 1, t->bytes, f) : 0;
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (!buf || got != t->bytes || extra) {
        fprintf(stderr, "error: input \"%s\": %s must hold exactly %llu bytes\n", t->name, path,
                (unsigned long long)t->bytes);
        free(buf);
        return NULL;
    }
    return buf;
}

int main(int argc, char** argv) {
    const dync_model_desc* m = &DYNC(model);
    size_t n_in = m->num_inputs, n_out = m->num_outputs, i;
    if (argc == 2 && strcmp(argv[1], "--info") == 0) {
        printf("model %s (%s), arena %llu bytes\n", m->name, m->target,
               (unsigned long long)m->arena_bytes);
        for (i = 0; i < n_in; i++) print_tensor("input", i, &m->inputs[i]);
        for (i = 0; i < n_out; i++) print_tensor("output", i, &m->outputs[i]);
        return 0;
    }
    if ((size_t)argc != 1 + n_in + n_out) {
        fprintf(stderr, "usage: %s IN_0..IN_%zu OUT_0..OUT_%zu (or --info)\n", argv[0], n_in,
                n_out);
        return 2;
    }
    const void** ins = calloc(n_in + 1, sizeof *ins);
    void** outs = calloc(n_out + 1, sizeof *outs);
    int status = 1;
    if (!ins || !outs) goto done;
    for (i = 0; i < n_in; i++)
        if (!(ins[i] = read_exact(argv[1 + i], &m->inputs[i]))) goto done;
    for (i = 0; i < n_out; i++)
        if (!(outs[i] = calloc(1, m->outputs[i].bytes ? m->outputs[i].bytes : 1))) goto done;

    DYNC_HANDLE* h = DYNC(create)();
    if (!h) {
        fprintf(stderr, "error: out of memory creating the model\n");
        goto done;
    }
    int32_t st = DYNC(run)(h, ins, outs);
    DYNC(destroy)(h);
    if (st != 0) {
        const char* node = DYNC(error_node)(st);
        fprintf(stderr, "error: %s%s%s (status %d)\n", node ? node : "", node ? ": " : "",
                DYNC(error_message)(st), (int)st);
        goto done;
    }
    for (i = 0; i < n_out; i++) {
        FILE* f = fopen(argv[1 + n_in + i], "wb");
        size_t put = f ? fwrite(outs[i], 1, m->outputs[i].bytes, f) : 0;
        if (!f || put != m->outputs[i].bytes || fclose(f) != 0) {
            fprintf(stderr, "error: output \"%s\": cannot write %s\n", m->outputs[i].name,
                    argv[1 + n_in + i]);
            goto done;
        }
    }
    status = 0;
done:
    if (ins)
        for (i = 0; i < n_in; i++) free((void*)ins[i]);
    if (outs)
        for (i = 0; i < n_out; i++) free(outs[i]);
    free(ins);
    free(outs);
    return status;
}
