import time, jax, numpy as np, jax.numpy as jnp
from scmp_jax import fp4
F32=np.float32
def rnd(shape, seed): return np.random.default_rng(seed).standard_normal(shape).astype(F32)
A, B = rnd((2, 32), 0), rnd((3, 32), 1)
w = jax.jit(lambda x: fp4.quantize(x, "mxfp4"))(B)
t=time.time()
f = lambda x: fp4.quantized_matmul(x, w, "mxfp4", quant_implementation="pallas", matmul_implementation="pallas", grad="ste")
y, tan = jax.jit(lambda x: jax.jvp(f, (x,), (x,)))(A)
print(time.time()-t)
y0 = jax.jit(lambda x: fp4.quantized_matmul(x, w, "mxfp4"))(A)
print((np.asarray(y).view(np.int32) == np.asarray(y0).view(np.int32)).all())
print(np.abs(np.asarray(tan) - A @ np.asarray(fp4.dequantize(w)).T).max())
