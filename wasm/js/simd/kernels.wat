;; webkv's WebAssembly SIMD (simd128) kernels: the CPU backend's element
;; loops (kvcore's reference kernels: reduce, every optimizer, 2-bit and
;; 1-bit quantization) four float32 lanes at a time, for browsers, where Go's
;; wasm backend emits no SIMD. This text is the source of truth:
;; kernels.wasm is assembled from it by `go generate` (internal/wat), and a
;; test checks that the committed bytes are what the text assembles to.
;;
;; The module defines no memory of its own: it imports the Go program's
;; linear memory, and every pointer argument is a byte offset into it (a Go
;; slice's &s[0]), so nothing is copied in or out.
;;
;; Conventions:
;;   - float32 scalar arguments (scale, thresholds, fill values) are passed
;;     as their i32 bits, so no JavaScript number conversion can touch them
;;     (syscall/js turns -0 into +0).
;;   - n counts float32 elements and is a multiple of 4 (the caller runs a
;;     shorter tail through the same kernels on a padded scratch block);
;;     nwords counts 32-bit packed words.
;;   - $p points to a kernel's float32 parameter slots, listed at each kernel.
;;     The caller derives them from StepParams with the reference's own
;;     float32 expressions (1-beta1, 1-lr*wd, ...), so they have its bits.
;;   - Every kernel performs, per lane, the same IEEE float32 operations in
;;     the same order as the reference loop it names, so results are
;;     bit-identical (NaN payloads aside). Gradient clipping
;;     clip(x, c) = min(max(x, -c), c) with NaN passing through is
;;     pmax(pmin(x, c), -c); "no clipping" is c = +inf, which leaves every
;;     value, NaN and infinities included, unchanged.
;;   - The reference's optional terms are computed even when they are zero
;;     (wd*w with wd = 0), as the reference does, so signed zeros and
;;     infinities agree too.
(module
  (import "go" "mem" (memory 1))

  ;; Every element-wise optimizer kernel: (p, w, g, s0, s1, s2, n). w and
  ;; the states s0..s2 (unused ones are ignored) are updated in place, g is
  ;; only read.
  (type $stepfn (func (param i32 i32 i32 i32 i32 i32 i32)))

  ;; The optimizer kernels by id, for reduce_step (the Go side uses the
  ;; same numbering).
  (table 12 funcref)
  (elem (i32.const 0)
    $sgd $sgd_mom $nag $adam $adamw $adagrad $rmsprop $rmsprop_centered
    $adadelta $signsgd $signum $ftrl)

  ;; probe returns 1: the loader calls it to check the module runs.
  (func (export "probe") (result i32)
    (i32.const 1))

  ;; ---------------------------------------------------------------- fill

  ;; fill: d[i] = v.
  (func $fill (export "fill") (param $d i32) (param $n i32) (param $v i32)
    (local $i i32) (local $end i32) (local $x v128)
    (local.set $x (i32x4.splat (local.get $v)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (v128.store (i32.add (local.get $d) (local.get $i)) (local.get $x))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; -------------------------------------------------------------- reduce

  ;; reduce: d[i] = scale * (s0[i] + s1[i] + ... + s(k-1)[i]), summed left
  ;; to right (kvcore's reduceRange). srcs points to k i32 pointers. d may
  ;; be s0 (each vector is read before it is written).
  (func $reduce (export "reduce") (param $d i32) (param $srcs i32) (param $k i32) (param $n i32) (param $scale i32)
    (call $reduce_at (local.get $d) (local.get $srcs) (local.get $k) (i32.const 0) (local.get $n)
      (f32.reinterpret_i32 (local.get $scale))))

  ;; reduce_at is reduce over the inputs' bytes [off, off+4n): input j is
  ;; srcs[j] + off. Up to 4 inputs stream in one pass with the scale fused;
  ;; more go in blocks of 2048 elements (8 KB of d stays in L1 while the
  ;; other inputs stream through it), as the reference does.
  (func $reduce_at (param $d i32) (param $srcs i32) (param $k i32) (param $off i32) (param $n i32) (param $scale f32)
    (local $a i32) (local $b i32) (local $c i32) (local $e i32)
    (local $blk i32) (local $len i32) (local $j i32)
    (local.set $a (i32.add (i32.load (local.get $srcs)) (local.get $off)))
    (if (i32.eq (local.get $k) (i32.const 1))
      (then
        (call $scale1 (local.get $d) (local.get $a) (local.get $n) (local.get $scale))
        (return)))
    (local.set $b (i32.add (i32.load offset=4 (local.get $srcs)) (local.get $off)))
    (if (i32.eq (local.get $k) (i32.const 2))
      (then
        (call $sum2 (local.get $d) (local.get $a) (local.get $b) (local.get $n) (local.get $scale))
        (return)))
    (local.set $c (i32.add (i32.load offset=8 (local.get $srcs)) (local.get $off)))
    (if (i32.eq (local.get $k) (i32.const 3))
      (then
        (call $sum3 (local.get $d) (local.get $a) (local.get $b) (local.get $c) (local.get $n) (local.get $scale))
        (return)))
    (local.set $e (i32.add (i32.load offset=12 (local.get $srcs)) (local.get $off)))
    (if (i32.eq (local.get $k) (i32.const 4))
      (then
        (call $sum4 (local.get $d) (local.get $a) (local.get $b) (local.get $c) (local.get $e) (local.get $n) (local.get $scale))
        (return)))
    ;; k > 4: per block, the first four summed (scale 1: x*1 == x), then
    ;; one pass per further input, the last one scaled.
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $blk) (local.get $n)))
        (local.set $len (i32.sub (local.get $n) (local.get $blk)))
        (if (i32.gt_u (local.get $len) (i32.const 2048))
          (then (local.set $len (i32.const 2048))))
        (call $sum4 (local.get $d) (local.get $a) (local.get $b) (local.get $c) (local.get $e) (local.get $len) (f32.const 1))
        (local.set $j (i32.const 4))
        (block $last
          (loop $more
            (br_if $last (i32.ge_u (local.get $j) (i32.sub (local.get $k) (i32.const 1))))
            (call $acc1 (local.get $d)
              (i32.add (i32.load (i32.add (local.get $srcs) (i32.shl (local.get $j) (i32.const 2))))
                       (i32.add (local.get $off) (i32.shl (local.get $blk) (i32.const 2))))
              (local.get $len))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $more)))
        (call $acc1s (local.get $d)
          (i32.add (i32.load (i32.add (local.get $srcs) (i32.shl (local.get $j) (i32.const 2))))
                   (i32.add (local.get $off) (i32.shl (local.get $blk) (i32.const 2))))
          (local.get $len) (local.get $scale))
        (local.set $blk (i32.add (local.get $blk) (local.get $len)))
        (local.set $d (i32.add (local.get $d) (i32.const 8192)))
        (local.set $a (i32.add (local.get $a) (i32.const 8192)))
        (local.set $b (i32.add (local.get $b) (i32.const 8192)))
        (local.set $c (i32.add (local.get $c) (i32.const 8192)))
        (local.set $e (i32.add (local.get $e) (i32.const 8192)))
        (br $next))))

  ;; scale1: d = a*s.
  (func $scale1 (param $d i32) (param $a i32) (param $n i32) (param $s f32)
    (local $i i32) (local $end i32) (local $sv v128)
    (local.set $sv (f32x4.splat (local.get $s)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (v128.store (i32.add (local.get $d) (local.get $i))
          (f32x4.mul (v128.load (i32.add (local.get $a) (local.get $i))) (local.get $sv)))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; sum2: d = (a+b)*s.
  (func $sum2 (param $d i32) (param $a i32) (param $b i32) (param $n i32) (param $s f32)
    (local $i i32) (local $end i32) (local $sv v128)
    (local.set $sv (f32x4.splat (local.get $s)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (v128.store (i32.add (local.get $d) (local.get $i))
          (f32x4.mul
            (f32x4.add (v128.load (i32.add (local.get $a) (local.get $i)))
                       (v128.load (i32.add (local.get $b) (local.get $i))))
            (local.get $sv)))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; sum3: d = ((a+b)+c)*s.
  (func $sum3 (param $d i32) (param $a i32) (param $b i32) (param $c i32) (param $n i32) (param $s f32)
    (local $i i32) (local $end i32) (local $sv v128)
    (local.set $sv (f32x4.splat (local.get $s)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (v128.store (i32.add (local.get $d) (local.get $i))
          (f32x4.mul
            (f32x4.add
              (f32x4.add (v128.load (i32.add (local.get $a) (local.get $i)))
                         (v128.load (i32.add (local.get $b) (local.get $i))))
              (v128.load (i32.add (local.get $c) (local.get $i))))
            (local.get $sv)))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; sum4: d = (((a+b)+c)+e)*s, two vectors per iteration while there are.
  (func $sum4 (param $d i32) (param $a i32) (param $b i32) (param $c i32) (param $e i32) (param $n i32) (param $s f32)
    (local $i i32) (local $end i32) (local $end2 i32) (local $sv v128)
    (local.set $sv (f32x4.splat (local.get $s)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (local.set $end2 (i32.and (local.get $end) (i32.const -32)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end2)))
        (v128.store (i32.add (local.get $d) (local.get $i))
          (f32x4.mul
            (f32x4.add
              (f32x4.add
                (f32x4.add (v128.load (i32.add (local.get $a) (local.get $i)))
                           (v128.load (i32.add (local.get $b) (local.get $i))))
                (v128.load (i32.add (local.get $c) (local.get $i))))
              (v128.load (i32.add (local.get $e) (local.get $i))))
            (local.get $sv)))
        (v128.store offset=16 (i32.add (local.get $d) (local.get $i))
          (f32x4.mul
            (f32x4.add
              (f32x4.add
                (f32x4.add (v128.load offset=16 (i32.add (local.get $a) (local.get $i)))
                           (v128.load offset=16 (i32.add (local.get $b) (local.get $i))))
                (v128.load offset=16 (i32.add (local.get $c) (local.get $i))))
              (v128.load offset=16 (i32.add (local.get $e) (local.get $i))))
            (local.get $sv)))
        (local.set $i (i32.add (local.get $i) (i32.const 32)))
        (br $next)))
    (if (i32.lt_u (local.get $i) (local.get $end))
      (then
        (v128.store (i32.add (local.get $d) (local.get $i))
          (f32x4.mul
            (f32x4.add
              (f32x4.add
                (f32x4.add (v128.load (i32.add (local.get $a) (local.get $i)))
                           (v128.load (i32.add (local.get $b) (local.get $i))))
                (v128.load (i32.add (local.get $c) (local.get $i))))
              (v128.load (i32.add (local.get $e) (local.get $i))))
            (local.get $sv))))))

  ;; acc1: d = d + a.
  (func $acc1 (param $d i32) (param $a i32) (param $n i32)
    (local $i i32) (local $end i32)
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (v128.store (i32.add (local.get $d) (local.get $i))
          (f32x4.add (v128.load (i32.add (local.get $d) (local.get $i)))
                     (v128.load (i32.add (local.get $a) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; acc1s: d = (d + a)*s.
  (func $acc1s (param $d i32) (param $a i32) (param $n i32) (param $s f32)
    (local $i i32) (local $end i32) (local $sv v128)
    (local.set $sv (f32x4.splat (local.get $s)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (v128.store (i32.add (local.get $d) (local.get $i))
          (f32x4.mul
            (f32x4.add (v128.load (i32.add (local.get $d) (local.get $i)))
                       (v128.load (i32.add (local.get $a) (local.get $i))))
            (local.get $sv)))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; ---------------------------------------------------------- optimizers

  ;; sgd is sgdStep: w = decay*w - A*clip(B*g, c).
  ;; slots: 0 decay (1-lr*wd), 1 A, 2 B, 3 c. With clipping A = lr, B =
  ;; rescale; without, A = lr*rescale, B = 1, c = +inf (the reference's
  ;; decay*w - lrs*g: 1*g == g).
  (func $sgd (export "sgd") (type $stepfn)
    (local $i i32) (local $end i32)
    (local $decay v128) (local $A v128) (local $B v128) (local $c v128) (local $nc v128)
    (local.set $decay (v128.load32_splat (local.get 0)))
    (local.set $A (v128.load32_splat offset=4 (local.get 0)))
    (local.set $B (v128.load32_splat offset=8 (local.get 0)))
    (local.set $c (v128.load32_splat offset=12 (local.get 0)))
    (local.set $nc (f32x4.neg (local.get $c)))
    (local.set $end (i32.shl (local.get 6) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (v128.store (i32.add (local.get 1) (local.get $i))
          (f32x4.sub
            (f32x4.mul (local.get $decay) (v128.load (i32.add (local.get 1) (local.get $i))))
            (f32x4.mul (local.get $A)
              (f32x4.pmax
                (f32x4.pmin
                  (f32x4.mul (local.get $B) (v128.load (i32.add (local.get 2) (local.get $i))))
                  (local.get $c))
                (local.get $nc)))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; sgd_mom is sgdMomStep (s0 = mom):
  ;;   m = mu*mom - lrwd*w - A*clip(B*g, c); mom = m; w = w + m
  ;; slots: 0 mu, 1 lrwd (lr*wd), 2 A, 3 B, 4 c (A, B, c as for sgd).
  (func $sgd_mom (export "sgd_mom") (type $stepfn)
    (local $i i32) (local $end i32)
    (local $mu v128) (local $lrwd v128) (local $A v128) (local $B v128) (local $c v128) (local $nc v128)
    (local $m v128)
    (local.set $mu (v128.load32_splat (local.get 0)))
    (local.set $lrwd (v128.load32_splat offset=4 (local.get 0)))
    (local.set $A (v128.load32_splat offset=8 (local.get 0)))
    (local.set $B (v128.load32_splat offset=12 (local.get 0)))
    (local.set $c (v128.load32_splat offset=16 (local.get 0)))
    (local.set $nc (f32x4.neg (local.get $c)))
    (local.set $end (i32.shl (local.get 6) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $m
          (f32x4.sub
            (f32x4.sub
              (f32x4.mul (local.get $mu) (v128.load (i32.add (local.get 3) (local.get $i))))
              (f32x4.mul (local.get $lrwd) (v128.load (i32.add (local.get 1) (local.get $i)))))
            (f32x4.mul (local.get $A)
              (f32x4.pmax
                (f32x4.pmin
                  (f32x4.mul (local.get $B) (v128.load (i32.add (local.get 2) (local.get $i))))
                  (local.get $c))
                (local.get $nc)))))
        (v128.store (i32.add (local.get 3) (local.get $i)) (local.get $m))
        (v128.store (i32.add (local.get 1) (local.get $i))
          (f32x4.add (v128.load (i32.add (local.get 1) (local.get $i))) (local.get $m)))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; nag is nagStep (s0 = mom):
  ;;   gr = clip(rs*g, c); m = mu*mom
  ;;   w' = w - m + mu1*(m - lr*(gr + wd*w)); mom = m - lr*(gr + wd*w')
  ;; slots: 0 mu, 1 mu1 (mu+1), 2 lr, 3 wd, 4 rs, 5 c.
  (func $nag (export "nag") (type $stepfn)
    (local $i i32) (local $end i32)
    (local $mu v128) (local $mu1 v128) (local $lr v128) (local $wd v128) (local $rs v128) (local $c v128) (local $nc v128)
    (local $gr v128) (local $m v128) (local $w v128)
    (local.set $mu (v128.load32_splat (local.get 0)))
    (local.set $mu1 (v128.load32_splat offset=4 (local.get 0)))
    (local.set $lr (v128.load32_splat offset=8 (local.get 0)))
    (local.set $wd (v128.load32_splat offset=12 (local.get 0)))
    (local.set $rs (v128.load32_splat offset=16 (local.get 0)))
    (local.set $c (v128.load32_splat offset=20 (local.get 0)))
    (local.set $nc (f32x4.neg (local.get $c)))
    (local.set $end (i32.shl (local.get 6) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $gr
          (f32x4.pmax
            (f32x4.pmin
              (f32x4.mul (local.get $rs) (v128.load (i32.add (local.get 2) (local.get $i))))
              (local.get $c))
            (local.get $nc)))
        (local.set $m (f32x4.mul (local.get $mu) (v128.load (i32.add (local.get 3) (local.get $i)))))
        (local.set $w (v128.load (i32.add (local.get 1) (local.get $i))))
        (local.set $w
          (f32x4.add
            (f32x4.sub (local.get $w) (local.get $m))
            (f32x4.mul (local.get $mu1)
              (f32x4.sub (local.get $m)
                (f32x4.mul (local.get $lr)
                  (f32x4.add (local.get $gr) (f32x4.mul (local.get $wd) (local.get $w))))))))
        (v128.store (i32.add (local.get 1) (local.get $i)) (local.get $w))
        (v128.store (i32.add (local.get 3) (local.get $i))
          (f32x4.sub (local.get $m)
            (f32x4.mul (local.get $lr)
              (f32x4.add (local.get $gr) (f32x4.mul (local.get $wd) (local.get $w))))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; adam is adamStep (s0 = mean, s1 = var):
  ;;   gr = clip(g*rs + w*wd, c)
  ;;   m = b1*mean + nb1*gr; v = b2*var + nb2*gr*gr
  ;;   w = w - lr*m/(sqrt(v) + eps)
  ;; slots: 0 b1, 1 b2, 2 nb1 (1-b1), 3 nb2 (1-b2), 4 rs, 5 wd, 6 lr
  ;; (Coef1), 7 eps, 8 c.
  (func $adam (export "adam") (type $stepfn)
    (local $i i32) (local $end i32)
    (local $b1 v128) (local $b2 v128) (local $nb1 v128) (local $nb2 v128) (local $rs v128) (local $wd v128)
    (local $lr v128) (local $eps v128) (local $c v128) (local $nc v128)
    (local $w v128) (local $gr v128) (local $m v128) (local $v v128)
    (local.set $b1 (v128.load32_splat (local.get 0)))
    (local.set $b2 (v128.load32_splat offset=4 (local.get 0)))
    (local.set $nb1 (v128.load32_splat offset=8 (local.get 0)))
    (local.set $nb2 (v128.load32_splat offset=12 (local.get 0)))
    (local.set $rs (v128.load32_splat offset=16 (local.get 0)))
    (local.set $wd (v128.load32_splat offset=20 (local.get 0)))
    (local.set $lr (v128.load32_splat offset=24 (local.get 0)))
    (local.set $eps (v128.load32_splat offset=28 (local.get 0)))
    (local.set $c (v128.load32_splat offset=32 (local.get 0)))
    (local.set $nc (f32x4.neg (local.get $c)))
    (local.set $end (i32.shl (local.get 6) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $w (v128.load (i32.add (local.get 1) (local.get $i))))
        (local.set $gr
          (f32x4.pmax
            (f32x4.pmin
              (f32x4.add
                (f32x4.mul (v128.load (i32.add (local.get 2) (local.get $i))) (local.get $rs))
                (f32x4.mul (local.get $w) (local.get $wd)))
              (local.get $c))
            (local.get $nc)))
        (local.set $m
          (f32x4.add
            (f32x4.mul (local.get $b1) (v128.load (i32.add (local.get 3) (local.get $i))))
            (f32x4.mul (local.get $nb1) (local.get $gr))))
        (local.set $v
          (f32x4.add
            (f32x4.mul (local.get $b2) (v128.load (i32.add (local.get 4) (local.get $i))))
            (f32x4.mul (f32x4.mul (local.get $nb2) (local.get $gr)) (local.get $gr))))
        (v128.store (i32.add (local.get 3) (local.get $i)) (local.get $m))
        (v128.store (i32.add (local.get 4) (local.get $i)) (local.get $v))
        (v128.store (i32.add (local.get 1) (local.get $i))
          (f32x4.sub (local.get $w)
            (f32x4.div
              (f32x4.mul (local.get $lr) (local.get $m))
              (f32x4.add (f32x4.sqrt (local.get $v)) (local.get $eps)))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; adamw is adamwStep (s0 = mean, s1 = var):
  ;;   gr = clip(rs*g, c)
  ;;   m = b1*mean + nb1*gr; v = b2*var + nb2*gr*gr
  ;;   w = w - eta*(m/(sqrt(v) + eps) + wd*w)
  ;; slots as adam, with 6 = eta (Coef1).
  (func $adamw (export "adamw") (type $stepfn)
    (local $i i32) (local $end i32)
    (local $b1 v128) (local $b2 v128) (local $nb1 v128) (local $nb2 v128) (local $rs v128) (local $wd v128)
    (local $eta v128) (local $eps v128) (local $c v128) (local $nc v128)
    (local $w v128) (local $gr v128) (local $m v128) (local $v v128)
    (local.set $b1 (v128.load32_splat (local.get 0)))
    (local.set $b2 (v128.load32_splat offset=4 (local.get 0)))
    (local.set $nb1 (v128.load32_splat offset=8 (local.get 0)))
    (local.set $nb2 (v128.load32_splat offset=12 (local.get 0)))
    (local.set $rs (v128.load32_splat offset=16 (local.get 0)))
    (local.set $wd (v128.load32_splat offset=20 (local.get 0)))
    (local.set $eta (v128.load32_splat offset=24 (local.get 0)))
    (local.set $eps (v128.load32_splat offset=28 (local.get 0)))
    (local.set $c (v128.load32_splat offset=32 (local.get 0)))
    (local.set $nc (f32x4.neg (local.get $c)))
    (local.set $end (i32.shl (local.get 6) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $w (v128.load (i32.add (local.get 1) (local.get $i))))
        (local.set $gr
          (f32x4.pmax
            (f32x4.pmin
              (f32x4.mul (local.get $rs) (v128.load (i32.add (local.get 2) (local.get $i))))
              (local.get $c))
            (local.get $nc)))
        (local.set $m
          (f32x4.add
            (f32x4.mul (local.get $b1) (v128.load (i32.add (local.get 3) (local.get $i))))
            (f32x4.mul (local.get $nb1) (local.get $gr))))
        (local.set $v
          (f32x4.add
            (f32x4.mul (local.get $b2) (v128.load (i32.add (local.get 4) (local.get $i))))
            (f32x4.mul (f32x4.mul (local.get $nb2) (local.get $gr)) (local.get $gr))))
        (v128.store (i32.add (local.get 3) (local.get $i)) (local.get $m))
        (v128.store (i32.add (local.get 4) (local.get $i)) (local.get $v))
        (v128.store (i32.add (local.get 1) (local.get $i))
          (f32x4.sub (local.get $w)
            (f32x4.mul (local.get $eta)
              (f32x4.add
                (f32x4.div (local.get $m) (f32x4.add (f32x4.sqrt (local.get $v)) (local.get $eps)))
                (f32x4.mul (local.get $wd) (local.get $w))))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; adagrad is adagradStep (s0 = hist):
  ;;   gr = clip(rs*g, c); h = hist + gr*gr; hist = h
  ;;   w = w + (gr/sqrt(h + eps) + w*wd) * nlr
  ;; slots: 0 rs, 1 wd, 2 nlr (-lr), 3 eps, 4 c.
  (func $adagrad (export "adagrad") (type $stepfn)
    (local $i i32) (local $end i32)
    (local $rs v128) (local $wd v128) (local $nlr v128) (local $eps v128) (local $c v128) (local $nc v128)
    (local $w v128) (local $gr v128) (local $h v128)
    (local.set $rs (v128.load32_splat (local.get 0)))
    (local.set $wd (v128.load32_splat offset=4 (local.get 0)))
    (local.set $nlr (v128.load32_splat offset=8 (local.get 0)))
    (local.set $eps (v128.load32_splat offset=12 (local.get 0)))
    (local.set $c (v128.load32_splat offset=16 (local.get 0)))
    (local.set $nc (f32x4.neg (local.get $c)))
    (local.set $end (i32.shl (local.get 6) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $w (v128.load (i32.add (local.get 1) (local.get $i))))
        (local.set $gr
          (f32x4.pmax
            (f32x4.pmin
              (f32x4.mul (local.get $rs) (v128.load (i32.add (local.get 2) (local.get $i))))
              (local.get $c))
            (local.get $nc)))
        (local.set $h
          (f32x4.add (v128.load (i32.add (local.get 3) (local.get $i)))
                     (f32x4.mul (local.get $gr) (local.get $gr))))
        (v128.store (i32.add (local.get 3) (local.get $i)) (local.get $h))
        (v128.store (i32.add (local.get 1) (local.get $i))
          (f32x4.add (local.get $w)
            (f32x4.mul
              (f32x4.add
                (f32x4.div (local.get $gr) (f32x4.sqrt (f32x4.add (local.get $h) (local.get $eps))))
                (f32x4.mul (local.get $w) (local.get $wd)))
              (local.get $nlr))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; rmsprop is rmspropStep (s0 = n):
  ;;   gr = clip(rs*g + wd*w, c); n' = ng1*(gr*gr) + g1*n
  ;;   w = clip(w - lr*(gr/sqrt(n' + eps)), cw)
  ;; slots: 0 g1, 1 ng1 (1-g1), 2 rs, 3 wd, 4 lr, 5 eps, 6 c, 7 cw
  ;; (+inf without clip_weights).
  (func $rmsprop (export "rmsprop") (type $stepfn)
    (local $i i32) (local $end i32)
    (local $g1 v128) (local $ng1 v128) (local $rs v128) (local $wd v128) (local $lr v128) (local $eps v128)
    (local $c v128) (local $nc v128) (local $cw v128) (local $ncw v128)
    (local $w v128) (local $gr v128) (local $n v128)
    (local.set $g1 (v128.load32_splat (local.get 0)))
    (local.set $ng1 (v128.load32_splat offset=4 (local.get 0)))
    (local.set $rs (v128.load32_splat offset=8 (local.get 0)))
    (local.set $wd (v128.load32_splat offset=12 (local.get 0)))
    (local.set $lr (v128.load32_splat offset=16 (local.get 0)))
    (local.set $eps (v128.load32_splat offset=20 (local.get 0)))
    (local.set $c (v128.load32_splat offset=24 (local.get 0)))
    (local.set $cw (v128.load32_splat offset=28 (local.get 0)))
    (local.set $nc (f32x4.neg (local.get $c)))
    (local.set $ncw (f32x4.neg (local.get $cw)))
    (local.set $end (i32.shl (local.get 6) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $w (v128.load (i32.add (local.get 1) (local.get $i))))
        (local.set $gr
          (f32x4.pmax
            (f32x4.pmin
              (f32x4.add
                (f32x4.mul (local.get $rs) (v128.load (i32.add (local.get 2) (local.get $i))))
                (f32x4.mul (local.get $wd) (local.get $w)))
              (local.get $c))
            (local.get $nc)))
        (local.set $n
          (f32x4.add
            (f32x4.mul (local.get $ng1) (f32x4.mul (local.get $gr) (local.get $gr)))
            (f32x4.mul (local.get $g1) (v128.load (i32.add (local.get 3) (local.get $i))))))
        (v128.store (i32.add (local.get 3) (local.get $i)) (local.get $n))
        (v128.store (i32.add (local.get 1) (local.get $i))
          (f32x4.pmax
            (f32x4.pmin
              (f32x4.sub (local.get $w)
                (f32x4.mul (local.get $lr)
                  (f32x4.div (local.get $gr) (f32x4.sqrt (f32x4.add (local.get $n) (local.get $eps))))))
              (local.get $cw))
            (local.get $ncw)))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; rmsprop_centered is rmspropCenteredStep (s0 = n, s1 = gm, s2 = delta):
  ;;   gr = clip(rs*g + wd*w, c)
  ;;   n' = ng1*gr*gr + g1*n; gm' = ng1*gr + g1*gm
  ;;   delta' = g2*delta - lr*gr/sqrt(n' - gm'*gm' + eps)
  ;;   w = clip(w + delta', cw)
  ;; slots: 0 g1, 1 ng1, 2 g2, 3 rs, 4 wd, 5 lr, 6 eps, 7 c, 8 cw.
  (func $rmsprop_centered (export "rmsprop_centered") (type $stepfn)
    (local $i i32) (local $end i32)
    (local $g1 v128) (local $ng1 v128) (local $g2 v128) (local $rs v128) (local $wd v128) (local $lr v128)
    (local $eps v128) (local $c v128) (local $nc v128) (local $cw v128) (local $ncw v128)
    (local $w v128) (local $gr v128) (local $n v128) (local $gm v128) (local $d v128)
    (local.set $g1 (v128.load32_splat (local.get 0)))
    (local.set $ng1 (v128.load32_splat offset=4 (local.get 0)))
    (local.set $g2 (v128.load32_splat offset=8 (local.get 0)))
    (local.set $rs (v128.load32_splat offset=12 (local.get 0)))
    (local.set $wd (v128.load32_splat offset=16 (local.get 0)))
    (local.set $lr (v128.load32_splat offset=20 (local.get 0)))
    (local.set $eps (v128.load32_splat offset=24 (local.get 0)))
    (local.set $c (v128.load32_splat offset=28 (local.get 0)))
    (local.set $cw (v128.load32_splat offset=32 (local.get 0)))
    (local.set $nc (f32x4.neg (local.get $c)))
    (local.set $ncw (f32x4.neg (local.get $cw)))
    (local.set $end (i32.shl (local.get 6) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $w (v128.load (i32.add (local.get 1) (local.get $i))))
        (local.set $gr
          (f32x4.pmax
            (f32x4.pmin
              (f32x4.add
                (f32x4.mul (local.get $rs) (v128.load (i32.add (local.get 2) (local.get $i))))
                (f32x4.mul (local.get $wd) (local.get $w)))
              (local.get $c))
            (local.get $nc)))
        (local.set $n
          (f32x4.add
            (f32x4.mul (f32x4.mul (local.get $ng1) (local.get $gr)) (local.get $gr))
            (f32x4.mul (local.get $g1) (v128.load (i32.add (local.get 3) (local.get $i))))))
        (local.set $gm
          (f32x4.add
            (f32x4.mul (local.get $ng1) (local.get $gr))
            (f32x4.mul (local.get $g1) (v128.load (i32.add (local.get 4) (local.get $i))))))
        (local.set $d
          (f32x4.sub
            (f32x4.mul (local.get $g2) (v128.load (i32.add (local.get 5) (local.get $i))))
            (f32x4.div
              (f32x4.mul (local.get $lr) (local.get $gr))
              (f32x4.sqrt
                (f32x4.add
                  (f32x4.sub (local.get $n) (f32x4.mul (local.get $gm) (local.get $gm)))
                  (local.get $eps))))))
        (v128.store (i32.add (local.get 3) (local.get $i)) (local.get $n))
        (v128.store (i32.add (local.get 4) (local.get $i)) (local.get $gm))
        (v128.store (i32.add (local.get 5) (local.get $i)) (local.get $d))
        (v128.store (i32.add (local.get 1) (local.get $i))
          (f32x4.pmax
            (f32x4.pmin (f32x4.add (local.get $w) (local.get $d)) (local.get $cw))
            (local.get $ncw)))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; adadelta is adadeltaStep (s0 = accG, s1 = accD):
  ;;   gr = clip(rs*g, c); ag = rho*accG + nrho*gr*gr
  ;;   d = sqrt(accD + eps)/sqrt(ag + eps)*gr
  ;;   accG = ag; accD = rho*accD + nrho*d*d; w = w - (d + wd*w)
  ;; slots: 0 rho, 1 nrho (1-rho), 2 rs, 3 wd, 4 eps, 5 c.
  (func $adadelta (export "adadelta") (type $stepfn)
    (local $i i32) (local $end i32)
    (local $rho v128) (local $nrho v128) (local $rs v128) (local $wd v128) (local $eps v128) (local $c v128) (local $nc v128)
    (local $w v128) (local $gr v128) (local $ag v128) (local $ad v128) (local $d v128)
    (local.set $rho (v128.load32_splat (local.get 0)))
    (local.set $nrho (v128.load32_splat offset=4 (local.get 0)))
    (local.set $rs (v128.load32_splat offset=8 (local.get 0)))
    (local.set $wd (v128.load32_splat offset=12 (local.get 0)))
    (local.set $eps (v128.load32_splat offset=16 (local.get 0)))
    (local.set $c (v128.load32_splat offset=20 (local.get 0)))
    (local.set $nc (f32x4.neg (local.get $c)))
    (local.set $end (i32.shl (local.get 6) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $w (v128.load (i32.add (local.get 1) (local.get $i))))
        (local.set $gr
          (f32x4.pmax
            (f32x4.pmin
              (f32x4.mul (local.get $rs) (v128.load (i32.add (local.get 2) (local.get $i))))
              (local.get $c))
            (local.get $nc)))
        (local.set $ag
          (f32x4.add
            (f32x4.mul (local.get $rho) (v128.load (i32.add (local.get 3) (local.get $i))))
            (f32x4.mul (f32x4.mul (local.get $nrho) (local.get $gr)) (local.get $gr))))
        (local.set $ad (v128.load (i32.add (local.get 4) (local.get $i))))
        (local.set $d
          (f32x4.mul
            (f32x4.div
              (f32x4.sqrt (f32x4.add (local.get $ad) (local.get $eps)))
              (f32x4.sqrt (f32x4.add (local.get $ag) (local.get $eps))))
            (local.get $gr)))
        (v128.store (i32.add (local.get 3) (local.get $i)) (local.get $ag))
        (v128.store (i32.add (local.get 4) (local.get $i))
          (f32x4.add
            (f32x4.mul (local.get $rho) (local.get $ad))
            (f32x4.mul (f32x4.mul (local.get $nrho) (local.get $d)) (local.get $d))))
        (v128.store (i32.add (local.get 1) (local.get $i))
          (f32x4.sub (local.get $w)
            (f32x4.add (local.get $d) (f32x4.mul (local.get $wd) (local.get $w)))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; signsgd is signsgdStep: w = decay*w - lr*sign(g).
  ;; slots: 0 decay (1-lr*(wd+wd_lh)), 1 lr.
  (func $signsgd (export "signsgd") (type $stepfn)
    (local $i i32) (local $end i32)
    (local $decay v128) (local $lr v128) (local $g v128)
    (local.set $decay (v128.load32_splat (local.get 0)))
    (local.set $lr (v128.load32_splat offset=4 (local.get 0)))
    (local.set $end (i32.shl (local.get 6) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $g (v128.load (i32.add (local.get 2) (local.get $i))))
        (v128.store (i32.add (local.get 1) (local.get $i))
          (f32x4.sub
            (f32x4.mul (local.get $decay) (v128.load (i32.add (local.get 1) (local.get $i))))
            (f32x4.mul (local.get $lr) (call $sign (local.get $g)))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; sign is sign32 lane-wise: +1 for x > 0, -1 for x < 0, +0 for zeros and
  ;; NaN.
  (func $sign (param $x v128) (result v128)
    (v128.or
      (v128.and (f32x4.gt (local.get $x) (v128.const i32x4 0 0 0 0)) (v128.const f32x4 1 1 1 1))
      (v128.and (f32x4.lt (local.get $x) (v128.const i32x4 0 0 0 0)) (v128.const f32x4 -1 -1 -1 -1))))

  ;; signum is signumStep (s0 = mom):
  ;;   gr = clip(rs*g, c); m = mu*mom - nmuwd*w - nmu*gr; mom = m
  ;;   w = decay*w + lr*sign(m)
  ;; slots: 0 mu, 1 nmu (1-mu), 2 nmuwd ((1-mu)*wd), 3 rs, 4 lr, 5 decay
  ;; (1-lr*wd_lh), 6 c.
  (func $signum (export "signum") (type $stepfn)
    (local $i i32) (local $end i32)
    (local $mu v128) (local $nmu v128) (local $nmuwd v128) (local $rs v128) (local $lr v128) (local $decay v128)
    (local $c v128) (local $nc v128)
    (local $w v128) (local $m v128)
    (local.set $mu (v128.load32_splat (local.get 0)))
    (local.set $nmu (v128.load32_splat offset=4 (local.get 0)))
    (local.set $nmuwd (v128.load32_splat offset=8 (local.get 0)))
    (local.set $rs (v128.load32_splat offset=12 (local.get 0)))
    (local.set $lr (v128.load32_splat offset=16 (local.get 0)))
    (local.set $decay (v128.load32_splat offset=20 (local.get 0)))
    (local.set $c (v128.load32_splat offset=24 (local.get 0)))
    (local.set $nc (f32x4.neg (local.get $c)))
    (local.set $end (i32.shl (local.get 6) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $w (v128.load (i32.add (local.get 1) (local.get $i))))
        (local.set $m
          (f32x4.sub
            (f32x4.sub
              (f32x4.mul (local.get $mu) (v128.load (i32.add (local.get 3) (local.get $i))))
              (f32x4.mul (local.get $nmuwd) (local.get $w)))
            (f32x4.mul (local.get $nmu)
              (f32x4.pmax
                (f32x4.pmin
                  (f32x4.mul (local.get $rs) (v128.load (i32.add (local.get 2) (local.get $i))))
                  (local.get $c))
                (local.get $nc)))))
        (v128.store (i32.add (local.get 3) (local.get $i)) (local.get $m))
        (v128.store (i32.add (local.get 1) (local.get $i))
          (f32x4.add
            (f32x4.mul (local.get $decay) (local.get $w))
            (f32x4.mul (local.get $lr) (call $sign (local.get $m)))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; ftrl is ftrlStep (s0 = z, s1 = n):
  ;;   gr = clip(rs*g, c); gg = gr*gr
  ;;   z' = z + (gr - (sqrt(n + gg) - sqrt(n))*w/lr); n' = n + gg
  ;;   w = (sign(z')*l1 - z')/((beta + sqrt(n'))/lr + wd) * (|z'| > l1)
  ;; slots: 0 rs, 1 wd, 2 lr, 3 l1, 4 beta, 5 c.
  (func $ftrl (export "ftrl") (type $stepfn)
    (local $i i32) (local $end i32)
    (local $rs v128) (local $wd v128) (local $lr v128) (local $l1 v128) (local $beta v128) (local $c v128) (local $nc v128)
    (local $gr v128) (local $gg v128) (local $n v128) (local $z v128) (local $keep v128)
    (local.set $rs (v128.load32_splat (local.get 0)))
    (local.set $wd (v128.load32_splat offset=4 (local.get 0)))
    (local.set $lr (v128.load32_splat offset=8 (local.get 0)))
    (local.set $l1 (v128.load32_splat offset=12 (local.get 0)))
    (local.set $beta (v128.load32_splat offset=16 (local.get 0)))
    (local.set $c (v128.load32_splat offset=20 (local.get 0)))
    (local.set $nc (f32x4.neg (local.get $c)))
    (local.set $end (i32.shl (local.get 6) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $gr
          (f32x4.pmax
            (f32x4.pmin
              (f32x4.mul (local.get $rs) (v128.load (i32.add (local.get 2) (local.get $i))))
              (local.get $c))
            (local.get $nc)))
        (local.set $gg (f32x4.mul (local.get $gr) (local.get $gr)))
        (local.set $n (v128.load (i32.add (local.get 4) (local.get $i))))
        (local.set $z
          (f32x4.add
            (v128.load (i32.add (local.get 3) (local.get $i)))
            (f32x4.sub (local.get $gr)
              (f32x4.div
                (f32x4.mul
                  (f32x4.sub
                    (f32x4.sqrt (f32x4.add (local.get $n) (local.get $gg)))
                    (f32x4.sqrt (local.get $n)))
                  (v128.load (i32.add (local.get 1) (local.get $i))))
                (local.get $lr)))))
        (local.set $n (f32x4.add (local.get $n) (local.get $gg)))
        (v128.store (i32.add (local.get 3) (local.get $i)) (local.get $z))
        (v128.store (i32.add (local.get 4) (local.get $i)) (local.get $n))
        (local.set $keep
          (v128.and
            (v128.or (f32x4.gt (local.get $z) (local.get $l1))
                     (f32x4.gt (f32x4.neg (local.get $z)) (local.get $l1)))
            (v128.const f32x4 1 1 1 1)))
        (v128.store (i32.add (local.get 1) (local.get $i))
          (f32x4.mul
            (f32x4.div
              (f32x4.sub (f32x4.mul (call $sign (local.get $z)) (local.get $l1)) (local.get $z))
              (f32x4.add
                (f32x4.div (f32x4.add (local.get $beta) (f32x4.sqrt (local.get $n))) (local.get $lr))
                (local.get $wd)))
            (local.get $keep)))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; lamb1 is lambPhase1 (mean, var updated) and the norms' partial sums:
  ;;   gr = clip(g*rs, c); m = b1*mean + nb1*gr; v = b2*var + nb2*gr*gr
  ;;   u = (m/c1)/(sqrt(v/c2) + eps) + wd*w      (c1 = c2 = 1 without bias
  ;;                                              correction: x/1 == x)
  ;;   partials[2b] += w*w, partials[2b+1] += u*u in float64, one element
  ;;   after the other, b = the element's block of 4096 counted from start
  ;;   (the index of the first element in the whole array).
  ;; Only the first `lanes` lanes of each vector count in the sums (the
  ;; caller's padded tail; 4 otherwise): the others add +0, which leaves a
  ;; sum of squares unchanged.
  ;; slots: 0 b1, 1 b2, 2 nb1, 3 nb2, 4 rs, 5 wd, 6 eps, 7 c, 8 c1, 9 c2.
  (func $lamb1 (export "lamb1")
    (param $p i32) (param $w i32) (param $g i32) (param $mean i32) (param $var i32) (param $n i32)
    (param $partials i32) (param $start i32) (param $lanes i32)
    (local $i i32) (local $end i32) (local $segend i32) (local $slot i32)
    (local $b1 v128) (local $b2 v128) (local $nb1 v128) (local $nb2 v128) (local $rs v128) (local $wd v128)
    (local $eps v128) (local $c v128) (local $nc v128) (local $c1 v128) (local $c2 v128) (local $mask v128)
    (local $wv v128) (local $gr v128) (local $m v128) (local $v v128) (local $u v128) (local $sq v128)
    (local $ww f64) (local $uu f64)
    (local.set $b1 (v128.load32_splat (local.get $p)))
    (local.set $b2 (v128.load32_splat offset=4 (local.get $p)))
    (local.set $nb1 (v128.load32_splat offset=8 (local.get $p)))
    (local.set $nb2 (v128.load32_splat offset=12 (local.get $p)))
    (local.set $rs (v128.load32_splat offset=16 (local.get $p)))
    (local.set $wd (v128.load32_splat offset=20 (local.get $p)))
    (local.set $eps (v128.load32_splat offset=24 (local.get $p)))
    (local.set $c (v128.load32_splat offset=28 (local.get $p)))
    (local.set $c1 (v128.load32_splat offset=32 (local.get $p)))
    (local.set $c2 (v128.load32_splat offset=36 (local.get $p)))
    (local.set $nc (f32x4.neg (local.get $c)))
    (local.set $mask (i32x4.lt_s (v128.const i32x4 0 1 2 3) (i32x4.splat (local.get $lanes))))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $segment
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        ;; This segment runs to the end of the current 4096-element block.
        (local.set $slot
          (i32.add (local.get $partials)
            (i32.shl
              (i32.shr_u (i32.add (local.get $start) (i32.shr_u (local.get $i) (i32.const 2))) (i32.const 12))
              (i32.const 4))))
        (local.set $segend
          (i32.shl
            (i32.sub
              (i32.and
                (i32.add (i32.add (local.get $start) (i32.shr_u (local.get $i) (i32.const 2))) (i32.const 4096))
                (i32.const -4096))
              (local.get $start))
            (i32.const 2)))
        (if (i32.gt_u (local.get $segend) (local.get $end))
          (then (local.set $segend (local.get $end))))
        (local.set $ww (f64.load (local.get $slot)))
        (local.set $uu (f64.load offset=8 (local.get $slot)))
        (block $segdone
          (loop $next
            (br_if $segdone (i32.ge_u (local.get $i) (local.get $segend)))
            (local.set $wv (v128.load (i32.add (local.get $w) (local.get $i))))
            (local.set $gr
              (f32x4.pmax
                (f32x4.pmin
                  (f32x4.mul (v128.load (i32.add (local.get $g) (local.get $i))) (local.get $rs))
                  (local.get $c))
                (local.get $nc)))
            (local.set $m
              (f32x4.add
                (f32x4.mul (local.get $b1) (v128.load (i32.add (local.get $mean) (local.get $i))))
                (f32x4.mul (local.get $nb1) (local.get $gr))))
            (local.set $v
              (f32x4.add
                (f32x4.mul (local.get $b2) (v128.load (i32.add (local.get $var) (local.get $i))))
                (f32x4.mul (f32x4.mul (local.get $nb2) (local.get $gr)) (local.get $gr))))
            (v128.store (i32.add (local.get $mean) (local.get $i)) (local.get $m))
            (v128.store (i32.add (local.get $var) (local.get $i)) (local.get $v))
            (local.set $u
              (f32x4.add
                (f32x4.div
                  (f32x4.div (local.get $m) (local.get $c1))
                  (f32x4.add (f32x4.sqrt (f32x4.div (local.get $v) (local.get $c2))) (local.get $eps)))
                (f32x4.mul (local.get $wd) (local.get $wv))))
            ;; The sums, lane by lane in order (float64 products of float32
            ;; values are exact; only the additions round).
            (local.set $wv (v128.and (local.get $wv) (local.get $mask)))
            (local.set $u (v128.and (local.get $u) (local.get $mask)))
            (local.set $sq (f64x2.promote_low_f32x4 (local.get $wv)))
            (local.set $sq (f64x2.mul (local.get $sq) (local.get $sq)))
            (local.set $ww (f64.add (local.get $ww) (f64x2.extract_lane 0 (local.get $sq))))
            (local.set $ww (f64.add (local.get $ww) (f64x2.extract_lane 1 (local.get $sq))))
            (local.set $sq (f64x2.promote_low_f32x4
              (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $wv) (local.get $wv))))
            (local.set $sq (f64x2.mul (local.get $sq) (local.get $sq)))
            (local.set $ww (f64.add (local.get $ww) (f64x2.extract_lane 0 (local.get $sq))))
            (local.set $ww (f64.add (local.get $ww) (f64x2.extract_lane 1 (local.get $sq))))
            (local.set $sq (f64x2.promote_low_f32x4 (local.get $u)))
            (local.set $sq (f64x2.mul (local.get $sq) (local.get $sq)))
            (local.set $uu (f64.add (local.get $uu) (f64x2.extract_lane 0 (local.get $sq))))
            (local.set $uu (f64.add (local.get $uu) (f64x2.extract_lane 1 (local.get $sq))))
            (local.set $sq (f64x2.promote_low_f32x4
              (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $u) (local.get $u))))
            (local.set $sq (f64x2.mul (local.get $sq) (local.get $sq)))
            (local.set $uu (f64.add (local.get $uu) (f64x2.extract_lane 0 (local.get $sq))))
            (local.set $uu (f64.add (local.get $uu) (f64x2.extract_lane 1 (local.get $sq))))
            (local.set $i (i32.add (local.get $i) (i32.const 16)))
            (br $next)))
        (f64.store (local.get $slot) (local.get $ww))
        (f64.store offset=8 (local.get $slot) (local.get $uu))
        (br $segment))))

  ;; lamb2 is lambPhase2: w = w - lr*u, u recomputed from the updated mean
  ;; and var and the unchanged weight as in lamb1.
  ;; slots: 0 lr (after the trust ratio), 1 wd, 2 eps, 3 c1, 4 c2.
  (func $lamb2 (export "lamb2") (param $p i32) (param $w i32) (param $mean i32) (param $var i32) (param $n i32)
    (local $i i32) (local $end i32)
    (local $lr v128) (local $wd v128) (local $eps v128) (local $c1 v128) (local $c2 v128) (local $wv v128)
    (local.set $lr (v128.load32_splat (local.get $p)))
    (local.set $wd (v128.load32_splat offset=4 (local.get $p)))
    (local.set $eps (v128.load32_splat offset=8 (local.get $p)))
    (local.set $c1 (v128.load32_splat offset=12 (local.get $p)))
    (local.set $c2 (v128.load32_splat offset=16 (local.get $p)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $wv (v128.load (i32.add (local.get $w) (local.get $i))))
        (v128.store (i32.add (local.get $w) (local.get $i))
          (f32x4.sub (local.get $wv)
            (f32x4.mul (local.get $lr)
              (f32x4.add
                (f32x4.div
                  (f32x4.div (v128.load (i32.add (local.get $mean) (local.get $i))) (local.get $c1))
                  (f32x4.add
                    (f32x4.sqrt (f32x4.div (v128.load (i32.add (local.get $var) (local.get $i))) (local.get $c2)))
                    (local.get $eps)))
                (f32x4.mul (local.get $wd) (local.get $wv))))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; ------------------------------------------------- fused reduce + step

  ;; reduce_step is reduce into scratch then step with grad = scratch, in
  ;; blocks of 2048 elements: the sum of a block stays in L1 (scratch holds
  ;; 2048 floats) instead of going to memory and coming back, and the result
  ;; is that of Reduce then Step (the same operations on every element).
  ;; id is the kernel's index in the table (sgd = 0 ... ftrl = 11).
  (func $reduce_step (export "reduce_step")
    (param $id i32) (param $p i32) (param $w i32) (param $srcs i32) (param $k i32) (param $scale i32)
    (param $s0 i32) (param $s1 i32) (param $s2 i32) (param $n i32) (param $scratch i32)
    (local $blk i32) (local $len i32) (local $off i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $blk) (local.get $n)))
        (local.set $len (i32.sub (local.get $n) (local.get $blk)))
        (if (i32.gt_u (local.get $len) (i32.const 2048))
          (then (local.set $len (i32.const 2048))))
        (local.set $off (i32.shl (local.get $blk) (i32.const 2)))
        (call $reduce_at (local.get $scratch) (local.get $srcs) (local.get $k) (local.get $off) (local.get $len)
          (f32.reinterpret_i32 (local.get $scale)))
        (call_indirect (type $stepfn)
          (local.get $p)
          (i32.add (local.get $w) (local.get $off))
          (local.get $scratch)
          (i32.add (local.get $s0) (local.get $off))
          (i32.add (local.get $s1) (local.get $off))
          (i32.add (local.get $s2) (local.get $off))
          (local.get $len)
          (local.get $id))
        (local.set $blk (i32.add (local.get $blk) (local.get $len)))
        (br $next))))

  ;; reduce_lamb1 is reduce into scratch then lamb1 with grad = scratch,
  ;; blocked as reduce_step (2048 divides LAMB's 4096-element norm blocks,
  ;; and lamb1 accumulates across calls in element order).
  (func $reduce_lamb1 (export "reduce_lamb1")
    (param $p i32) (param $w i32) (param $srcs i32) (param $k i32) (param $scale i32)
    (param $mean i32) (param $var i32) (param $n i32) (param $partials i32) (param $scratch i32)
    (local $blk i32) (local $len i32) (local $off i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $blk) (local.get $n)))
        (local.set $len (i32.sub (local.get $n) (local.get $blk)))
        (if (i32.gt_u (local.get $len) (i32.const 2048))
          (then (local.set $len (i32.const 2048))))
        (local.set $off (i32.shl (local.get $blk) (i32.const 2)))
        (call $reduce_at (local.get $scratch) (local.get $srcs) (local.get $k) (local.get $off) (local.get $len)
          (f32.reinterpret_i32 (local.get $scale)))
        (call $lamb1
          (local.get $p)
          (i32.add (local.get $w) (local.get $off))
          (local.get $scratch)
          (i32.add (local.get $mean) (local.get $off))
          (i32.add (local.get $var) (local.get $off))
          (local.get $len)
          (local.get $partials)
          (local.get $blk)
          (i32.const 4))
        (local.set $blk (i32.add (local.get $blk) (local.get $len)))
        (br $next))))

  ;; --------------------------------------------------------- quantizers

  ;; quantize2 is Quantize2Bit over nwords whole words (16 values each):
  ;;   v = r + g; code 11 and r = v - pos where v >= pos, else code 10 and
  ;;   r = v - neg where v <= neg, else code 00 and r = v - 0
  ;; Values 4q..4q+3 of a word are its byte q, the first in the top bits:
  ;; lane c's code goes to bits 6-2c of byte q.
  (func $quantize2 (export "quantize2") (param $out i32) (param $g i32) (param $r i32) (param $nwords i32)
    (param $pos i32) (param $neg i32)
    (local $i i32) (local $o i32) (local $end i32)
    (local $pv v128) (local $nv v128) (local $v v128) (local $ge v128) (local $le v128) (local $word v128)
    (local.set $pv (i32x4.splat (local.get $pos)))
    (local.set $nv (i32x4.splat (local.get $neg)))
    (local.set $end (i32.shl (local.get $nwords) (i32.const 6)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        ;; byte 0
        (local.set $v (f32x4.add (v128.load (i32.add (local.get $r) (local.get $i)))
                                 (v128.load (i32.add (local.get $g) (local.get $i)))))
        (local.set $ge (f32x4.ge (local.get $v) (local.get $pv)))
        (local.set $le (v128.andnot (f32x4.le (local.get $v) (local.get $nv)) (local.get $ge)))
        (v128.store (i32.add (local.get $r) (local.get $i))
          (f32x4.sub (local.get $v)
            (v128.or (v128.and (local.get $ge) (local.get $pv)) (v128.and (local.get $le) (local.get $nv)))))
        (local.set $word
          (v128.or (v128.and (local.get $ge) (v128.const i32x4 0xc0 0x30 0x0c 0x03))
                   (v128.and (local.get $le) (v128.const i32x4 0x80 0x20 0x08 0x02))))
        ;; byte 1
        (local.set $v (f32x4.add (v128.load offset=16 (i32.add (local.get $r) (local.get $i)))
                                 (v128.load offset=16 (i32.add (local.get $g) (local.get $i)))))
        (local.set $ge (f32x4.ge (local.get $v) (local.get $pv)))
        (local.set $le (v128.andnot (f32x4.le (local.get $v) (local.get $nv)) (local.get $ge)))
        (v128.store offset=16 (i32.add (local.get $r) (local.get $i))
          (f32x4.sub (local.get $v)
            (v128.or (v128.and (local.get $ge) (local.get $pv)) (v128.and (local.get $le) (local.get $nv)))))
        (local.set $word
          (v128.or (local.get $word)
            (v128.or (v128.and (local.get $ge) (v128.const i32x4 0xc000 0x3000 0x0c00 0x0300))
                     (v128.and (local.get $le) (v128.const i32x4 0x8000 0x2000 0x0800 0x0200)))))
        ;; byte 2
        (local.set $v (f32x4.add (v128.load offset=32 (i32.add (local.get $r) (local.get $i)))
                                 (v128.load offset=32 (i32.add (local.get $g) (local.get $i)))))
        (local.set $ge (f32x4.ge (local.get $v) (local.get $pv)))
        (local.set $le (v128.andnot (f32x4.le (local.get $v) (local.get $nv)) (local.get $ge)))
        (v128.store offset=32 (i32.add (local.get $r) (local.get $i))
          (f32x4.sub (local.get $v)
            (v128.or (v128.and (local.get $ge) (local.get $pv)) (v128.and (local.get $le) (local.get $nv)))))
        (local.set $word
          (v128.or (local.get $word)
            (v128.or (v128.and (local.get $ge) (v128.const i32x4 0xc00000 0x300000 0x0c0000 0x030000))
                     (v128.and (local.get $le) (v128.const i32x4 0x800000 0x200000 0x080000 0x020000)))))
        ;; byte 3
        (local.set $v (f32x4.add (v128.load offset=48 (i32.add (local.get $r) (local.get $i)))
                                 (v128.load offset=48 (i32.add (local.get $g) (local.get $i)))))
        (local.set $ge (f32x4.ge (local.get $v) (local.get $pv)))
        (local.set $le (v128.andnot (f32x4.le (local.get $v) (local.get $nv)) (local.get $ge)))
        (v128.store offset=48 (i32.add (local.get $r) (local.get $i))
          (f32x4.sub (local.get $v)
            (v128.or (v128.and (local.get $ge) (local.get $pv)) (v128.and (local.get $le) (local.get $nv)))))
        (local.set $word
          (v128.or (local.get $word)
            (v128.or (v128.and (local.get $ge) (v128.const i32x4 0xc0000000 0x30000000 0x0c000000 0x03000000))
                     (v128.and (local.get $le) (v128.const i32x4 0x80000000 0x20000000 0x08000000 0x02000000)))))
        (i32.store (i32.add (local.get $out) (local.get $o)) (call $or4 (local.get $word)))
        (local.set $o (i32.add (local.get $o) (i32.const 4)))
        (local.set $i (i32.add (local.get $i) (i32.const 64)))
        (br $next))))

  ;; or4 is the bitwise or of the four lanes of x.
  (func $or4 (param $x v128) (result i32)
    (local.set $x (v128.or (local.get $x)
      (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x))))
    (i32x4.extract_lane 0
      (v128.or (local.get $x)
        (i8x16.shuffle 4 5 6 7 0 1 2 3 12 13 14 15 8 9 10 11 (local.get $x) (local.get $x)))))

  ;; quantize1 is Quantize1Bit over nwords whole words (32 values each):
  ;;   v = r + g; bit 1 and r = v + (-1) where v > t, else bit 0 and
  ;;   r = v + 1
  ;; Value j of a word is bit 7-(j%8) of byte j/8: vector q (values
  ;; 4q..4q+3) fills the high (q even) or low (q odd) nibble of byte q/2.
  (func $quantize1 (export "quantize1") (param $out i32) (param $g i32) (param $r i32) (param $nwords i32) (param $t i32)
    (local $i i32) (local $o i32) (local $end i32) (local $q i32)
    (local $tv v128) (local $v v128) (local $m v128) (local $word v128) (local $byte v128)
    (local.set $tv (i32x4.splat (local.get $t)))
    (local.set $end (i32.shl (local.get $nwords) (i32.const 7)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $word (v128.const i32x4 0 0 0 0))
        (local.set $q (i32.const 0))
        (block $bytesdone
          (loop $bytes
            (br_if $bytesdone (i32.ge_u (local.get $q) (i32.const 4)))
            ;; high nibble: values 8q..8q+3
            (local.set $v (f32x4.add (v128.load (i32.add (local.get $r) (local.get $i)))
                                     (v128.load (i32.add (local.get $g) (local.get $i)))))
            (local.set $m (f32x4.gt (local.get $v) (local.get $tv)))
            (v128.store (i32.add (local.get $r) (local.get $i))
              (f32x4.add (local.get $v)
                (v128.or (v128.const f32x4 1 1 1 1) (v128.and (local.get $m) (v128.const i32x4 0x80000000 0x80000000 0x80000000 0x80000000)))))
            (local.set $byte (v128.and (local.get $m) (v128.const i32x4 0x80 0x40 0x20 0x10)))
            ;; low nibble: values 8q+4..8q+7
            (local.set $v (f32x4.add (v128.load offset=16 (i32.add (local.get $r) (local.get $i)))
                                     (v128.load offset=16 (i32.add (local.get $g) (local.get $i)))))
            (local.set $m (f32x4.gt (local.get $v) (local.get $tv)))
            (v128.store offset=16 (i32.add (local.get $r) (local.get $i))
              (f32x4.add (local.get $v)
                (v128.or (v128.const f32x4 1 1 1 1) (v128.and (local.get $m) (v128.const i32x4 0x80000000 0x80000000 0x80000000 0x80000000)))))
            (local.set $byte (v128.or (local.get $byte) (v128.and (local.get $m) (v128.const i32x4 0x08 0x04 0x02 0x01))))
            (local.set $word (v128.or (local.get $word)
              (i32x4.shl (local.get $byte) (i32.shl (local.get $q) (i32.const 3)))))
            (local.set $q (i32.add (local.get $q) (i32.const 1)))
            (local.set $i (i32.add (local.get $i) (i32.const 32)))
            (br $bytes)))
        (i32.store (i32.add (local.get $out) (local.get $o)) (call $or4 (local.get $word)))
        (local.set $o (i32.add (local.get $o) (i32.const 4)))
        (br $next))))

  ;; dequantize2 is Dequantize2Bit over nwords whole words: code 11 -> t,
  ;; 10 -> nt (-1*t), 00 and 01 -> +0.
  (func $dequantize2 (export "dequantize2") (param $out i32) (param $in i32) (param $nwords i32) (param $t i32) (param $nt i32)
    (local $i i32) (local $o i32) (local $end i32) (local $q i32)
    (local $tv v128) (local $ntv v128) (local $word v128) (local $x v128) (local $hi v128) (local $lo v128)
    (local.set $tv (i32x4.splat (local.get $t)))
    (local.set $ntv (i32x4.splat (local.get $nt)))
    (local.set $end (i32.shl (local.get $nwords) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $word (v128.load32_splat (i32.add (local.get $in) (local.get $i))))
        (local.set $q (i32.const 0))
        (block $bytesdone
          (loop $bytes
            (br_if $bytesdone (i32.ge_u (local.get $q) (i32.const 4)))
            (local.set $x (i32x4.shr_u (local.get $word) (i32.shl (local.get $q) (i32.const 3))))
            (local.set $hi (i32x4.eq (v128.and (local.get $x) (v128.const i32x4 0x80 0x20 0x08 0x02))
                                     (v128.const i32x4 0x80 0x20 0x08 0x02)))
            (local.set $lo (i32x4.eq (v128.and (local.get $x) (v128.const i32x4 0x40 0x10 0x04 0x01))
                                     (v128.const i32x4 0x40 0x10 0x04 0x01)))
            (v128.store (i32.add (local.get $out) (local.get $o))
              (v128.and (v128.bitselect (local.get $tv) (local.get $ntv) (local.get $lo)) (local.get $hi)))
            (local.set $o (i32.add (local.get $o) (i32.const 16)))
            (local.set $q (i32.add (local.get $q) (i32.const 1)))
            (br $bytes)))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $next))))

  ;; dequantize1 is Dequantize1Bit over nwords whole words: 1 -> +1,
  ;; 0 -> -1.
  (func $dequantize1 (export "dequantize1") (param $out i32) (param $in i32) (param $nwords i32)
    (local $i i32) (local $o i32) (local $end i32) (local $q i32)
    (local $word v128) (local $x v128)
    (local.set $end (i32.shl (local.get $nwords) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $word (v128.load32_splat (i32.add (local.get $in) (local.get $i))))
        (local.set $q (i32.const 0))
        (block $bytesdone
          (loop $bytes
            (br_if $bytesdone (i32.ge_u (local.get $q) (i32.const 4)))
            (local.set $x (i32x4.shr_u (local.get $word) (i32.shl (local.get $q) (i32.const 3))))
            (v128.store (i32.add (local.get $out) (local.get $o))
              (v128.bitselect (v128.const f32x4 1 1 1 1) (v128.const f32x4 -1 -1 -1 -1)
                (i32x4.eq (v128.and (local.get $x) (v128.const i32x4 0x80 0x40 0x20 0x10))
                          (v128.const i32x4 0x80 0x40 0x20 0x10))))
            (v128.store offset=16 (i32.add (local.get $out) (local.get $o))
              (v128.bitselect (v128.const f32x4 1 1 1 1) (v128.const f32x4 -1 -1 -1 -1)
                (i32x4.eq (v128.and (local.get $x) (v128.const i32x4 0x08 0x04 0x02 0x01))
                          (v128.const i32x4 0x08 0x04 0x02 0x01))))
            (local.set $o (i32.add (local.get $o) (i32.const 32)))
            (local.set $q (i32.add (local.get $q) (i32.const 1)))
            (br $bytes)))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $next)))))
