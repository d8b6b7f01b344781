// The C++ side of the collective layer: a C ABI over Gloo (Debian's libgloo) for `collective/mod.rs`.
//
// Rendezvous: a gloo::rendezvous::Store over hiredis (`RedisStore` below: Gloo's own RedisStore cannot AUTH or
// SELECT a database, and waits without a deadline we control), wrapped in Gloo's PrefixStore, then
// gloo::rendezvous::Context::connectFullMesh over the TCP transport. Algorithms: gloo::allreduce, broadcast,
// allgatherv, barrier (the option-struct API), ReduceScatterHalvingDoubling (the algorithm-class API).
//
// Every entry point catches every exception (no C++ exception crosses into Rust) and returns a status code
// with a message written to the caller's buffer.
#include <hiredis/hiredis.h>

#include <gloo/allgatherv.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/math.h>
#include <gloo/reduce_scatter.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstring>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

// Status codes (mirrored in collective/mod.rs).
enum Status : int {
  kOk = 0,
  kTimeout = 1,
  kPeerLost = 2,
  kInvalid = 3,
  kStore = 4,
  kFailed = 5,
};

struct StoreError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct RendezvousTimeout : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using Clock = std::chrono::steady_clock;

// A Gloo Store over one hiredis connection: AUTH (password or user + password), SELECT db, keys written with a
// time-to-live so rendezvous keys never accumulate, and waits bounded by the rendezvous deadline (one deadline
// for the whole rendezvous, not one timeout per key).
class RedisStore : public gloo::rendezvous::Store {
 public:
  RedisStore(const std::string& host, int port, const std::string& user, const std::string& password, int db,
             std::chrono::milliseconds timeout)
      : deadline_(Clock::now() + timeout), ttlMs_(timeout.count() * 2 + 60000) {
    struct timeval tv;
    auto ms = std::max<int64_t>(std::min<int64_t>(timeout.count(), 10000), 100);
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    redis_ = redisConnectWithTimeout(host.c_str(), port, tv);
    if (redis_ == nullptr) throw StoreError("redis: out of memory allocating the connection");
    if (redis_->err) {
      std::string msg = std::string("redis ") + host + ":" + std::to_string(port) + ": " + redis_->errstr;
      redisFree(redis_);
      redis_ = nullptr;
      throw StoreError(msg);
    }
    redisSetTimeout(redis_, tv);
    if (!password.empty()) {
      redisReply* r = user.empty()
                          ? command("AUTH %b", password.data(), password.size())
                          : command("AUTH %b %b", user.data(), user.size(), password.data(), password.size());
      expectOk(r, "AUTH");
    }
    if (db != 0) expectOk(command("SELECT %d", db), "SELECT");
  }

  ~RedisStore() override {
    if (redis_ != nullptr) redisFree(redis_);
  }

  void set(const std::string& key, const std::vector<char>& data) override {
    expectOk(command("SET %b %b PX %lld", key.data(), key.size(), data.data(), data.size(), (long long)ttlMs_),
             "SET");
  }

  std::vector<char> get(const std::string& key) override {
    wait({key});
    redisReply* r = command("GET %b", key.data(), key.size());
    if (r->type != REDIS_REPLY_STRING) {
      freeReplyObject(r);
      throw StoreError("redis GET " + key + ": key vanished");
    }
    std::vector<char> out(r->str, r->str + r->len);
    freeReplyObject(r);
    return out;
  }

  void wait(const std::vector<std::string>& keys) override { wait(keys, kDefaultTimeout); }

  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    auto until = std::min(deadline_, Clock::now() + timeout);
    for (;;) {
      std::vector<std::string> missing;
      for (const auto& k : keys)
        if (!exists(k)) missing.push_back(k);
      if (missing.empty()) return;
      if (Clock::now() >= until) {
        std::string msg = "rendezvous timed out waiting for key(s):";
        for (const auto& k : missing) msg += " " + k;
        throw RendezvousTimeout(msg);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  bool exists(const std::string& key) {
    redisReply* r = command("EXISTS %b", key.data(), key.size());
    bool yes = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return yes;
  }

 private:
  redisReply* command(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    void* r = redisvCommand(redis_, fmt, ap);
    va_end(ap);
    if (r == nullptr) throw StoreError(std::string("redis: ") + (redis_->err ? redis_->errstr : "no reply"));
    auto* reply = static_cast<redisReply*>(r);
    if (reply->type == REDIS_REPLY_ERROR) {
      std::string msg = std::string("redis: ") + std::string(reply->str, reply->len);
      freeReplyObject(reply);
      throw StoreError(msg);
    }
    return reply;
  }

  static void expectOk(redisReply* r, const char* what) {
    bool ok = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    if (!ok) throw StoreError(std::string("redis ") + what + ": unexpected reply");
  }

  redisContext* redis_ = nullptr;
  Clock::time_point deadline_;
  int64_t ttlMs_;
};

int fail(char* err, size_t errlen, int code, const std::string& msg) {
  if (err != nullptr && errlen > 0) {
    size_t n = std::min(errlen - 1, msg.size());
    std::memcpy(err, msg.data(), n);
    err[n] = '\0';
  }
  return code;
}

bool mentionsTimeout(const std::string& m) {
  return m.find("imeout") != std::string::npos || m.find("imed out") != std::string::npos;
}

// Runs `f`, mapping every exception to a status code and message.
template <typename F>
int guarded(char* err, size_t errlen, F&& f) {
  try {
    f();
    return kOk;
  } catch (const RendezvousTimeout& e) {
    return fail(err, errlen, kTimeout, e.what());
  } catch (const StoreError& e) {
    return fail(err, errlen, kStore, e.what());
  } catch (const gloo::IoException& e) {
    std::string m = e.what();
    return fail(err, errlen, mentionsTimeout(m) ? kTimeout : kPeerLost, m);
  } catch (const gloo::Exception& e) {
    std::string m = e.what();
    return fail(err, errlen, mentionsTimeout(m) ? kTimeout : kFailed, m);
  } catch (const std::invalid_argument& e) {
    return fail(err, errlen, kInvalid, e.what());
  } catch (const std::exception& e) {
    std::string m = e.what();
    return fail(err, errlen, mentionsTimeout(m) ? kTimeout : kFailed, m);
  } catch (...) {
    return fail(err, errlen, kFailed, "unknown C++ exception");
  }
}

}  // namespace

// One rank's connected group (opaque to Rust).
struct spark_coll {
  std::shared_ptr<gloo::rendezvous::Context> ctx;
  std::chrono::milliseconds timeout;
  uint32_t tag = 0;
  uint32_t nextTag() { return tag++; }
};

namespace {
template <typename T>
int allreduce_sum(spark_coll* c, T* data, size_t n, char* err, size_t errlen) {
  return guarded(err, errlen, [&] {
    gloo::AllreduceOptions opts(c->ctx);
    opts.setOutput(data, n);
    opts.setReduceFunction(
        static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<T>));
    opts.setTag(c->nextTag());
    opts.setTimeout(c->timeout);
    gloo::allreduce(opts);
  });
}

}  // namespace

extern "C" {

// Joins the group: publishes this rank's addresses under `prefix`, connects to every other rank. On a
// rendezvous timeout the message names the ranks whose addresses never appeared.
int spark_coll_connect(const char* host, int port, const char* user, const char* password, int db,
                       const char* prefix, int rank, int size, const char* hostname, int64_t timeout_ms,
                       spark_coll** out, char* err, size_t errlen) {
  *out = nullptr;
  std::unique_ptr<RedisStore> store;
  std::unique_ptr<gloo::rendezvous::PrefixStore> prefixed;
  int rc = guarded(err, errlen, [&] {
    if (size < 1 || rank < 0 || rank >= size) throw std::invalid_argument("rank must be in [0, worldSize)");
    if (timeout_ms <= 0) throw std::invalid_argument("timeout must be > 0");
    auto timeout = std::chrono::milliseconds(timeout_ms);
    store.reset(new RedisStore(host, port, user, password, db, timeout));
    prefixed.reset(new gloo::rendezvous::PrefixStore(prefix, *store));
    gloo::transport::tcp::attr attr;
    attr.hostname = hostname;
    auto dev = gloo::transport::tcp::CreateDevice(attr);
    auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, size);
    ctx->setTimeout(timeout);
    ctx->connectFullMesh(*prefixed, dev);
    auto c = std::make_unique<spark_coll>();
    c->ctx = std::move(ctx);
    c->timeout = timeout;
    *out = c.release();
  });
  if (rc == kTimeout && store) {
    // Which ranks never arrived: connectFullMesh's first write is "rank_<r>" (the rank's hostname), before
    // it waits for anyone (PrefixStore keys are "<prefix>/<key>").
    std::string missing;
    int count = 0;
    try {
      for (int r = 0; r < size; r++) {
        if (!store->exists(std::string(prefix) + "/rank_" + std::to_string(r))) {
          missing += (count++ ? ", " : "") + std::to_string(r);
        }
      }
    } catch (...) {
      missing.clear();
    }
    std::ostringstream m;
    m << "rendezvous of rank " << rank << " of " << size << " under '" << prefix << "' timed out after "
      << timeout_ms << " ms: ";
    if (count > 0)
      m << (count == 1 ? "rank " : "ranks ") << missing << " did not join";
    else
      m << "every rank published its address, but connecting failed (" << (err ? err : "") << ")";
    return fail(err, errlen, kTimeout, m.str());
  }
  return rc;
}

void spark_coll_free(spark_coll* c) {
  try {
    delete c;
  } catch (...) {
  }
}

int spark_coll_broadcast(spark_coll* c, void* data, size_t bytes, int root, char* err, size_t errlen) {
  return guarded(err, errlen, [&] {
    if (root < 0 || root >= c->ctx->size) throw std::invalid_argument("root must be in [0, worldSize)");
    gloo::BroadcastOptions opts(c->ctx);
    opts.setOutput(static_cast<uint8_t*>(data), bytes);
    opts.setRoot(root);
    opts.setTag(c->nextTag());
    opts.setTimeout(c->timeout);
    gloo::broadcast(opts);
  });
}

int spark_coll_allreduce_f32(spark_coll* c, float* data, size_t n, char* err, size_t errlen) {
  return allreduce_sum(c, data, n, err, errlen);
}

int spark_coll_allreduce_f64(spark_coll* c, double* data, size_t n, char* err, size_t errlen) {
  return allreduce_sum(c, data, n, err, errlen);
}

// Sums `data` (n floats, identical layout on every rank) across ranks and leaves rank r's block — counts[r]
// elements starting at sum(counts[0..r]) of the logical vector — at the START of `data`. Other elements are
// clobbered. counts has worldSize entries summing to n.
int spark_coll_reduce_scatter_f32(spark_coll* c, float* data, size_t n, const int* counts, char* err,
                                  size_t errlen) {
  return guarded(err, errlen, [&] {
    if (n > static_cast<size_t>(INT32_MAX)) throw std::invalid_argument("reduce-scatter: more than 2^31-1 elements");
    std::vector<int> recv(counts, counts + c->ctx->size);
    gloo::ReduceScatterHalvingDoubling<float> algo(c->ctx, std::vector<float*>{data}, static_cast<int>(n), recv);
    algo.run();
  });
}

// Gathers every rank's `counts[r]` elements into `out` (rank order); `in` must not overlap `out`.
int spark_coll_allgatherv_f32(spark_coll* c, const float* in, float* out, const size_t* counts, char* err,
                              size_t errlen) {
  return guarded(err, errlen, [&] {
    std::vector<size_t> elems(counts, counts + c->ctx->size);
    gloo::AllgathervOptions opts(c->ctx);
    opts.setInput(const_cast<float*>(in), elems[c->ctx->rank]);
    opts.setOutput(out, elems);
    opts.setTag(c->nextTag());
    opts.setTimeout(c->timeout);
    gloo::allgatherv(opts);
  });
}

int spark_coll_barrier(spark_coll* c, char* err, size_t errlen) {
  return guarded(err, errlen, [&] {
    gloo::BarrierOptions opts(c->ctx);
    opts.setTag(c->nextTag());
    opts.setTimeout(c->timeout);
    gloo::barrier(opts);
  });
}

}  // extern "C"
