// Search an hnswlib (0.8 format) index file in place, through a memory map.
//
// Why: hnswlib's load_index copies the whole file into private memory while holding the GIL
// (about 1.7 s per million 512-d vectors even from the page cache). Searching needs nothing
// but reads, and the level-0 block of the file *is* the in-memory layout, so mapping the file
// opens a million-vector index in milliseconds, shares its pages with the OS cache and with
// other processes, and costs no private memory. Writes (add, delete) still go through hnswlib,
// which the Python side loads only when a write is asked for.
//
// The search is hnswlib's searchKnn / searchBaseLayerST algorithm (greedy descent through the
// upper layers, then a best-first beam of width ef on layer 0), with deleted elements skipped
// as hnswlib does, plus allow/deny label sets evaluated without the GIL. Every link read from
// the file is bounds-checked, so a corrupt file raises instead of crashing.
//
// File layout (hnswlib HierarchicalNSW::saveIndex):
//   header (96 bytes), then element_count records of size_data_per_element bytes:
//     [u32 list header: u16 count, u8 flags (bit 0 = deleted)] [maxM0 x u32 neighbour ids]
//     [dim x f32 vector] [u64 label]
//   then per element: u32 size, then size bytes = level x ([u32 count] [maxM x u32 ids]).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <queue>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#include <immintrin.h>
#define CASEBOOK_X86 1
#endif

namespace py = pybind11;

namespace {

constexpr size_t kHeaderSize = 96;
constexpr int kLevelShift = 56;  // upper_[i] = (levels << 56) | file offset of element i's lists
constexpr uint64_t kOffsetMask = (uint64_t{1} << kLevelShift) - 1;

template <typename T>
T read_pod(const char *p) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}

// ------------------------------------------------------------------------------------------
// Inner product, with an AVX2/FMA variant picked at run time (the module itself is built for
// baseline x86-64 so that one build runs on every CPU).
// ------------------------------------------------------------------------------------------
float dot_generic(const float *a, const float *b, size_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; ++i) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

#ifdef CASEBOOK_X86
float dot_sse(const float *a, const float *b, size_t n) {
    __m128 acc0 = _mm_setzero_ps(), acc1 = _mm_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        acc0 = _mm_add_ps(acc0, _mm_mul_ps(_mm_loadu_ps(a + i), _mm_loadu_ps(b + i)));
        acc1 = _mm_add_ps(acc1, _mm_mul_ps(_mm_loadu_ps(a + i + 4), _mm_loadu_ps(b + i + 4)));
    }
    float tmp[4];
    _mm_storeu_ps(tmp, _mm_add_ps(acc0, acc1));
    float s = (tmp[0] + tmp[1]) + (tmp[2] + tmp[3]);
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

__attribute__((target("avx2,fma"))) float dot_avx2(const float *a, const float *b, size_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    __m256 acc = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
    __m128 lo = _mm256_castps256_ps128(acc), hi = _mm256_extractf128_ps(acc, 1);
    __m128 s4 = _mm_add_ps(lo, hi);
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_shuffle_ps(s4, s4, 0x55));
    float s = _mm_cvtss_f32(s4);
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}
#endif

using DotFn = float (*)(const float *, const float *, size_t);

DotFn pick_dot(std::string *name) {
#ifdef CASEBOOK_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        *name = "avx2";
        return dot_avx2;
    }
    *name = "sse";
    return dot_sse;
#else
    *name = "generic";
    return dot_generic;
#endif
}

// ------------------------------------------------------------------------------------------
// Visited sets: one epoch-tagged array per concurrent search, reused (as hnswlib does).
// ------------------------------------------------------------------------------------------
struct Visited {
    std::vector<uint16_t> mark;
    uint16_t epoch = 0;
    explicit Visited(size_t n) : mark(n, 0) {}
    void next() {
        if (++epoch == 0) {
            std::fill(mark.begin(), mark.end(), 0);
            epoch = 1;
        }
    }
};

class VisitedPool {
  public:
    explicit VisitedPool(size_t n) : n_(n) {}
    size_t created() const { return created_; }
    std::unique_ptr<Visited> take() {
        std::lock_guard<std::mutex> g(m_);
        if (free_.empty()) {
            ++created_;
            return std::make_unique<Visited>(n_);
        }
        auto v = std::move(free_.back());
        free_.pop_back();
        return v;
    }
    void give(std::unique_ptr<Visited> v) {
        std::lock_guard<std::mutex> g(m_);
        free_.push_back(std::move(v));
    }

  private:
    size_t n_;
    size_t created_ = 0;
    std::mutex m_;
    std::vector<std::unique_ptr<Visited>> free_;
};

struct Allowed {
    const int64_t *allow = nullptr;  // sorted; nullptr = everything allowed
    size_t n_allow = 0;
    const int64_t *deny = nullptr;  // sorted
    size_t n_deny = 0;
    py::object *filter = nullptr;  // Python predicate (label) -> bool; needs the GIL
    bool any() const { return allow || deny || filter; }
    bool operator()(int64_t label) const {
        if (allow && !std::binary_search(allow, allow + n_allow, label)) return false;
        if (deny && std::binary_search(deny, deny + n_deny, label)) return false;
        if (filter && !(*filter)(label).cast<bool>()) return false;
        return true;
    }
};

using Pair = std::pair<float, uint32_t>;
struct ByFirst {
    bool operator()(const Pair &a, const Pair &b) const { return a.first < b.first; }
};
using MaxHeap = std::priority_queue<Pair, std::vector<Pair>, ByFirst>;

class MappedHnsw {
  public:
    MappedHnsw(py::buffer buffer, size_t dim) : owner_(buffer), dim_(dim) {
        info_ = buffer.request(false);
        if (info_.ndim != 1 || info_.itemsize != 1)
            throw std::invalid_argument("expected a flat byte buffer of the index file");
        base_ = static_cast<const char *>(info_.ptr);
        size_ = static_cast<size_t>(info_.size);
        parse();
    }

    size_t element_count() const { return count_; }
    size_t dim() const { return dim_; }
    int max_level() const { return max_level_; }
    size_t M() const { return M_; }
    size_t upper_elements() const { return n_upper_; }
    std::string kernel() const { return kernel_; }
    // Touch every page of the mapping once, without the GIL: reads a cold file into the OS cache
    // sequentially (read-ahead) and maps the pages into this process, so later searches take
    // neither disk reads nor page faults. Returns the bytes touched; stops early after
    // stop_warm(), which Python calls before interpreter shutdown (a thread that takes the GIL
    // back while the interpreter finalizes is killed mid-C++ and aborts the process).
    size_t warm() {
        py::gil_scoped_release nogil;
        volatile unsigned char sink = 0;
        const size_t step = 4096;
        size_t off = 0;
        for (; off < size_ && !stop_.load(std::memory_order_relaxed); off += step)
            sink = sink ^ static_cast<unsigned char>(base_[off]);
        (void)sink;
        return std::min(off, size_);
    }

    void stop_warm() { stop_.store(true); }

    size_t private_bytes() const {
        return upper_.size() * sizeof(uint64_t) + (pool_ ? pool_->created() : 0) * count_ * sizeof(uint16_t);
    }

    // k nearest stored vectors of each query row (inner-product distance 1 - q.v, like
    // hnswlib's "ip" space). Rows with fewer than k reachable allowed elements are padded with
    // label -1 and distance +inf.
    py::tuple knn_query(py::array_t<float, py::array::c_style | py::array::forcecast> queries, size_t k,
                        size_t ef, py::object allow, py::object deny, py::object filter) {
        if (queries.ndim() != 2 || static_cast<size_t>(queries.shape(1)) != dim_)
            throw std::invalid_argument("queries must be an (n, " + std::to_string(dim_) + ") array");
        if (k == 0) throw std::invalid_argument("k must be positive");
        const size_t nq = static_cast<size_t>(queries.shape(0));
        py::array_t<int64_t> labels({nq, k});
        py::array_t<float> dists({nq, k});
        auto L = labels.mutable_unchecked<2>();
        auto D = dists.mutable_unchecked<2>();
        for (size_t r = 0; r < nq; ++r)
            for (size_t c = 0; c < k; ++c) {
                L(r, c) = -1;
                D(r, c) = std::numeric_limits<float>::infinity();
            }
        py::array_t<int64_t, py::array::c_style | py::array::forcecast> allow_a, deny_a;
        Allowed ok;
        if (!allow.is_none()) {
            allow_a = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(allow);
            if (!allow_a) throw std::invalid_argument("allow must be an int64 array");
            ok.allow = allow_a.data();
            ok.n_allow = static_cast<size_t>(allow_a.size());
        }
        if (!deny.is_none()) {
            deny_a = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(deny);
            if (!deny_a) throw std::invalid_argument("deny must be an int64 array");
            ok.deny = deny_a.data();
            ok.n_deny = static_cast<size_t>(deny_a.size());
        }
        if (!filter.is_none()) ok.filter = &filter;
        if (count_ == 0) return py::make_tuple(labels, dists);
        const float *q = queries.data();
        ef = std::max(ef, k);
        std::string error;
        auto run = [&]() {
            auto vis = pool_->take();
            try {
                for (size_t r = 0; r < nq; ++r) {
                    MaxHeap top = search_one(q + r * dim_, ef, ok, *vis);
                    while (top.size() > k) top.pop();
                    for (size_t c = top.size(); c-- > 0;) {
                        L(r, c) = label_of(top.top().second);
                        D(r, c) = top.top().first;
                        top.pop();
                    }
                }
            } catch (const std::exception &e) {
                error = e.what();
            }
            pool_->give(std::move(vis));
        };
        if (ok.filter) {
            run();  // the predicate is Python code: keep the GIL
        } else {
            py::gil_scoped_release nogil;
            run();
        }
        if (!error.empty()) throw std::runtime_error(error);
        return py::make_tuple(labels, dists);
    }

  private:
    void parse() {
        if (size_ < kHeaderSize) throw std::runtime_error("file shorter than an hnswlib header");
        const char *h = base_;
        const uint64_t offset_level0 = read_pod<uint64_t>(h + 0);
        const uint64_t max_elements = read_pod<uint64_t>(h + 8);
        count_ = read_pod<uint64_t>(h + 16);
        per_element_ = read_pod<uint64_t>(h + 24);
        label_offset_ = read_pod<uint64_t>(h + 32);
        data_offset_ = read_pod<uint64_t>(h + 40);
        max_level_ = read_pod<int32_t>(h + 48);
        entry_ = read_pod<uint32_t>(h + 52);
        maxM_ = read_pod<uint64_t>(h + 56);
        maxM0_ = read_pod<uint64_t>(h + 64);
        M_ = read_pod<uint64_t>(h + 72);
        // Link counts are u16 in the file; bounding M first also keeps the size arithmetic
        // below far from overflow, whatever a damaged header says.
        if (maxM0_ > 65535 || maxM_ > 65535 || M_ > 65535 || dim_ == 0 || dim_ > (size_t{1} << 20))
            throw std::runtime_error("not an hnswlib index (inconsistent header)");
        if (offset_level0 != 0 || count_ > max_elements || M_ == 0 || maxM0_ == 0 || maxM_ == 0 ||
            data_offset_ != maxM0_ * 4 + 4 || label_offset_ != data_offset_ + dim_ * 4 ||
            per_element_ != label_offset_ + 8)
            throw std::runtime_error("not an hnswlib index of " + std::to_string(dim_) +
                                     "-value vectors (inconsistent header)");
        if (count_ > std::numeric_limits<uint32_t>::max() || max_level_ > 255)
            throw std::runtime_error("too many elements or levels");
        level0_ = base_ + kHeaderSize;
        const size_t level0_bytes = count_ * per_element_;
        if (size_ < kHeaderSize + level0_bytes)
            throw std::runtime_error("file truncated inside the layer-0 block");
        links_per_element_ = maxM_ * 4 + 4;
        if (count_ == 0) return;
        if (entry_ >= count_ || max_level_ < 0) throw std::runtime_error("bad entry point");
        // Upper layers: walk the tail once, remembering where each element's lists start.
        upper_.assign(count_, 0);
        size_t pos = kHeaderSize + level0_bytes;
        for (size_t i = 0; i < count_; ++i) {
            if (pos + 4 > size_) throw std::runtime_error("file truncated in the upper-layer links");
            const uint32_t sz = read_pod<uint32_t>(base_ + pos);
            pos += 4;
            if (sz) {
                if (sz % links_per_element_ || pos + sz > size_ ||
                    sz / links_per_element_ > static_cast<size_t>(max_level_))
                    throw std::runtime_error("corrupt upper-layer link list of element " + std::to_string(i));
                upper_[i] = pos | (static_cast<uint64_t>(sz / links_per_element_) << kLevelShift);
                ++n_upper_;
                pos += sz;
            }
        }
        if (pos != size_) throw std::runtime_error("trailing bytes after the upper-layer links");
        if (static_cast<uint64_t>(max_level_) > (upper_[entry_] >> kLevelShift)) throw std::runtime_error("entry point has no upper layers");
        dot_ = pick_dot(&kernel_);
        pool_ = std::make_unique<VisitedPool>(count_);
    }

    const char *record(uint32_t id) const { return level0_ + static_cast<size_t>(id) * per_element_; }
    const float *vec(uint32_t id) const { return reinterpret_cast<const float *>(record(id) + data_offset_); }
    int64_t label_of(uint32_t id) const { return static_cast<int64_t>(read_pod<uint64_t>(record(id) + label_offset_)); }
    bool deleted(uint32_t id) const { return (static_cast<unsigned char>(record(id)[2]) & 0x01) != 0; }
    float dist(const float *q, uint32_t id) const { return 1.0f - dot_(q, vec(id), dim_); }

    const uint32_t *links(uint32_t id, int level, uint32_t *n) const {
        const char *p;
        size_t cap;
        if (level == 0) {
            p = record(id);
            cap = maxM0_;
        } else {
            const uint64_t u = upper_[id];
            if (static_cast<uint64_t>(level) > (u >> kLevelShift))
                throw std::runtime_error("link to a level an element does not have (corrupt file)");
            p = base_ + (u & kOffsetMask) + static_cast<size_t>(level - 1) * links_per_element_;
            cap = maxM_;
        }
        *n = read_pod<uint16_t>(p);
        if (*n > cap) throw std::runtime_error("link list longer than M (corrupt file)");
        return reinterpret_cast<const uint32_t *>(p + 4);
    }

    MaxHeap search_one(const float *q, size_t ef, const Allowed &ok, Visited &vis) const {
        uint32_t cur = entry_;
        float cur_d = dist(q, cur);
        for (int level = max_level_; level > 0; --level) {
            bool changed = true;
            while (changed) {
                changed = false;
                uint32_t n;
                const uint32_t *nb = links(cur, level, &n);
                for (uint32_t j = 0; j < n; ++j) {
                    const uint32_t c = nb[j];
                    if (c >= count_) throw std::runtime_error("link outside the index (corrupt file)");
                    const float d = dist(q, c);
                    if (d < cur_d) {
                        cur_d = d;
                        cur = c;
                        changed = true;
                    }
                }
            }
        }
        // Layer 0: best-first beam search (hnswlib searchBaseLayerST, filtered variant).
        vis.next();
        uint16_t *mark = vis.mark.data();
        const uint16_t tag = vis.epoch;
        MaxHeap top;        // the best ef so far, worst on top
        MaxHeap frontier;   // candidates to expand, nearest on top (negated distances)
        const bool filtered = ok.any();
        float bound;
        if (!deleted(cur) && (!filtered || ok(label_of(cur)))) {
            top.emplace(cur_d, cur);
            frontier.emplace(-cur_d, cur);
            bound = cur_d;
        } else {
            frontier.emplace(-std::numeric_limits<float>::max(), cur);
            bound = std::numeric_limits<float>::max();
        }
        mark[cur] = tag;
        while (!frontier.empty()) {
            const Pair node = frontier.top();
            if (-node.first > bound && top.size() == ef) break;
            frontier.pop();
            uint32_t n;
            const uint32_t *nb = links(node.second, 0, &n);
#ifdef CASEBOOK_X86
            if (n) _mm_prefetch(reinterpret_cast<const char *>(vec(nb[0] < count_ ? nb[0] : 0)), _MM_HINT_T0);
#endif
            for (uint32_t j = 0; j < n; ++j) {
                const uint32_t c = nb[j];
                if (c >= count_) throw std::runtime_error("link outside the index (corrupt file)");
#ifdef CASEBOOK_X86
                if (j + 1 < n && nb[j + 1] < count_)
                    _mm_prefetch(reinterpret_cast<const char *>(vec(nb[j + 1])), _MM_HINT_T0);
#endif
                if (mark[c] == tag) continue;
                mark[c] = tag;
                const float d = dist(q, c);
                if (top.size() < ef || bound > d) {
                    frontier.emplace(-d, c);
                    if (!deleted(c) && (!filtered || ok(label_of(c)))) top.emplace(d, c);
                    if (top.size() > ef) top.pop();
                    if (!top.empty()) bound = top.top().first;
                }
            }
        }
        return top;
    }

    py::object owner_;
    py::buffer_info info_;
    const char *base_ = nullptr;
    size_t size_ = 0;
    size_t dim_;
    size_t count_ = 0, per_element_ = 0, label_offset_ = 0, data_offset_ = 0;
    size_t maxM_ = 0, maxM0_ = 0, M_ = 0, links_per_element_ = 0;
    int max_level_ = 0;
    uint32_t entry_ = 0;
    const char *level0_ = nullptr;
    std::vector<uint64_t> upper_;
    size_t n_upper_ = 0;
    DotFn dot_ = dot_generic;
    std::string kernel_ = "generic";
    std::unique_ptr<VisitedPool> pool_;
    std::atomic<bool> stop_{false};
};

}  // namespace

PYBIND11_MODULE(_hnswmap, m) {
    m.doc() = "Read-only search of an hnswlib index file through a memory map (see _hnswmap.cpp).";
    m.def("kernel", []() {
        std::string name;
        pick_dot(&name);
        return name;
    }, "The inner-product kernel this CPU gets: avx2, sse or generic.");
    py::class_<MappedHnsw>(m, "MappedHnsw")
        .def(py::init<py::buffer, size_t>(), py::arg("buffer"), py::arg("dim"),
             "Parse and check the hnswlib file held by ``buffer`` (e.g. an mmap); raises on a "
             "corrupt or foreign file.")
        .def("knn_query", &MappedHnsw::knn_query, py::arg("queries"), py::arg("k"), py::arg("ef"),
             py::arg("allow") = py::none(), py::arg("deny") = py::none(), py::arg("filter") = py::none(),
             "(labels int64 (n, k), distances float32 (n, k)); distance = 1 - inner product; "
             "padding label -1.")
        .def("warm", &MappedHnsw::warm, "Touch every page (reads the file into the OS cache and maps it); "
             "releases the GIL: meant for a background thread, stopped by stop_warm().")
        .def("stop_warm", &MappedHnsw::stop_warm, "Make a running or later warm() return at once.")
        .def_property_readonly("element_count", &MappedHnsw::element_count)
        .def_property_readonly("dim", &MappedHnsw::dim)
        .def_property_readonly("max_level", &MappedHnsw::max_level)
        .def_property_readonly("M", &MappedHnsw::M)
        .def_property_readonly("upper_elements", &MappedHnsw::upper_elements)
        .def_property_readonly("kernel", &MappedHnsw::kernel)
        .def_property_readonly("private_bytes", &MappedHnsw::private_bytes);
}
