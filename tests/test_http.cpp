// The server's HTTP plumbing below the routes: the connection pool that grows with the
// connections and shrinks when they go, and the watchdog that closes connections too slow to
// send a request (real threads and real loopback sockets); API keys and CORS origins; the
// Responses API's store (its bounds) and event stream (a failure, a whole call).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "core/check.h"
#include "server/access.h"
#include "server/connection_pool.h"
#include "server/connections.h"
#include "server/request_watchdog.h"
#include "server/response_store.h"
#include "server/responses_api.h"

using namespace std::chrono_literals;

namespace dsv4 {
namespace {

// Waits up to `limit` for pred.
template <typename P>
bool eventually(P pred, std::chrono::milliseconds limit = 5s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// Jobs that count themselves started, then block until the gate opens (a slow client each).
// Each job holds its own copy of the future, so the gate may go while a job still returns from
// its wait; a gate that goes unopened (a failed ASSERT) opens, so that the pool can join.
struct Gate {
  std::promise<void> opened;
  std::shared_future<void> open_future = opened.get_future().share();
  bool is_open = false;
  void hold(ConnectionPool& pool, int jobs, std::atomic<int>& started) {
    for (int i = 0; i < jobs; ++i)
      pool.enqueue([f = open_future, &started] {
        ++started;
        f.wait();
      });
  }
  void open() {
    opened.set_value();
    is_open = true;
  }
  ~Gate() {
    if (!is_open) open();
  }
};

TEST(ConnectionPool, StartsAThreadForEachJobThatWouldWait) {
  // Declared before the pool: the jobs use them until the pool has joined its threads.
  std::atomic<int> running{0};
  std::atomic<bool> quick{false};
  ConnectionPool pool(64, 2, 50ms);
  Gate gate;
  gate.hold(pool, 40, running);
  // 40 blocked jobs (40 slow clients): each has its own thread, none waits for another.
  ASSERT_TRUE(eventually([&] { return running == 40; }));
  EXPECT_EQ(pool.threads(), 40u);
  pool.enqueue([&quick] { quick = true; });  // a /health probe meanwhile
  EXPECT_TRUE(eventually([&] { return quick.load(); }, 1s));
  gate.open();
  // Idle for the linger time, the threads beyond the kept 2 exit.
  EXPECT_TRUE(eventually([&] { return pool.threads() == 2; }));
  EXPECT_EQ(pool.peak_threads(), 41u);
}

TEST(ConnectionPool, UnderATrickleTheSurplusThreadsEnd) {
  // A connection every 20 ms (a /health probe, say) after a burst of 20: the most recently idle
  // thread takes each, and the others end after the linger time. Handed round-robin, every
  // thread would be woken within its linger time and none would end.
  std::atomic<int> running{0};
  ConnectionPool pool(64, 2, 200ms);
  Gate gate;
  gate.hold(pool, 20, running);
  ASSERT_TRUE(eventually([&] { return running == 20; }));
  gate.open();
  const auto end = std::chrono::steady_clock::now() + 1500ms;
  while (std::chrono::steady_clock::now() < end) {
    pool.enqueue([] {});
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_LE(pool.threads(), 3u);
}

TEST(ConnectionPool, BeyondMaxThreadsJobsWaitTheirTurn) {
  std::atomic<int> started{0};
  ConnectionPool pool(3, 1, 50ms);
  Gate gate;
  gate.hold(pool, 10, started);
  ASSERT_TRUE(eventually([&] { return started == 3; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(started, 3);
  EXPECT_EQ(pool.threads(), 3u);
  gate.open();
  EXPECT_TRUE(eventually([&] { return started == 10; }));
  EXPECT_EQ(pool.peak_threads(), 3u);
}

TEST(ConnectionPool, ShutdownRunsWhatIsQueuedThenJoins) {
  std::atomic<int> done{0};
  {
    ConnectionPool pool(2, 0, 10s);
    for (int i = 0; i < 20; ++i)
      pool.enqueue([&] {
        std::this_thread::sleep_for(1ms);
        ++done;
      });
    pool.shutdown();
    EXPECT_EQ(done, 20);
    EXPECT_EQ(pool.threads(), 0u);
  }
  EXPECT_EQ(done, 20);
}

// A listening socket on a free loopback port, and connections to it accepted in this process.
struct Loopback {
  int listener = -1, port = 0;
  Loopback() {
    listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(listener, 16), 0);
    socklen_t len = sizeof a;
    getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~Loopback() { close(listener); }
  // {client fd, accepted fd, the client's port}
  std::tuple<int, int, int> connect() const {
    const int c = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    EXPECT_EQ(::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    const int s = accept(listener, nullptr, nullptr);
    sockaddr_in mine{};
    socklen_t len = sizeof mine;
    getsockname(c, reinterpret_cast<sockaddr*>(&mine), &len);
    return {c, s, ntohs(mine.sin_port)};
  }
};

// The server side has been shut down: the client reads end of file.
bool closed_by_server(int client) {
  timeval tv{0, 1000};
  setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char c;
  return recv(client, &c, 1, 0) == 0;
}

TEST(RequestWatchdog, ClosesAConnectionThatSendsNoWholeRequestInTime) {
  Loopback net;
  RequestWatchdog watchdog(net.port, 300ms);
  auto [slow, slow_server, slow_port] = net.connect();
  auto [busy, busy_server, busy_port] = net.connect();
  auto [again, again_server, again_port] = net.connect();
  EXPECT_EQ(connections_on(net.port).size(), 3u);
  watchdog.handling("127.0.0.1", busy_port);  // a generation: never timed out while it runs
  watchdog.handling("127.0.0.1", again_port);
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(closed_by_server(slow));
  watchdog.answered("127.0.0.1", again_port);  // its clock starts again now
  const auto t1 = std::chrono::steady_clock::now();
  ASSERT_TRUE(eventually([fd = slow] { return closed_by_server(fd); }, 2s));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 300ms);
  ASSERT_TRUE(eventually([fd = again] { return closed_by_server(fd); }, 2s));
  EXPECT_GE(std::chrono::steady_clock::now() - t1, 300ms);
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(closed_by_server(busy));
  EXPECT_EQ(watchdog.timed_out(), 2u);
  for (int fd : {slow, slow_server, busy, busy_server, again, again_server}) close(fd);
}

TEST(Connections, ShutdownChecksTheDescriptorIsStillThatSocket) {
  Loopback net;
  auto [client, server, port] = net.connect();
  std::vector<ConnectionInfo> found = connections_on(net.port);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].peer_port, port);
  close(server);
  // The number now names another socket (the lowest free descriptor is reused): nothing is shut down.
  const int other = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(other, found[0].fd);
  EXPECT_FALSE(shutdown_connection(found[0]));
  auto [client2, server2, port2] = net.connect();
  ConnectionInfo now = connections_on(net.port).at(0);
  EXPECT_EQ(now.peer_port, port2);
  EXPECT_FALSE(closed_by_server(client2));
  EXPECT_TRUE(shutdown_connection(now));
  EXPECT_TRUE(closed_by_server(client2));
  for (int fd : {client, other, client2, server2}) close(fd);
}


TEST(ApiKeys, ComparedWholeWhateverTheGuess) {
  EXPECT_TRUE(constant_time_equal("sk-abc", "sk-abc"));
  for (const char* guess : {"", "sk-ab", "sk-abd", "sk-abcd", "SK-ABC", "sk-abc\n"})
    EXPECT_FALSE(constant_time_equal(guess, "sk-abc")) << guess;
  const ApiKeys keys({"k1", "key-two"});
  EXPECT_TRUE(keys.required());
  EXPECT_TRUE(keys.accepts("key-two"));
  EXPECT_FALSE(keys.accepts("key-tw"));
  EXPECT_FALSE(ApiKeys().required());
  EXPECT_THROW(ApiKeys({""}), Error);
  EXPECT_THROW(ApiKeys({"a\tb"}), Error);
}

TEST(ApiKeys, TakenFromBearerOrXApiKey) {
  EXPECT_EQ(ApiKeys::presented("Bearer sk-1", ""), "sk-1");
  EXPECT_EQ(ApiKeys::presented("bearer   sk-1", "other"), "sk-1");
  EXPECT_EQ(ApiKeys::presented("", "sk-2"), "sk-2");
  EXPECT_EQ(ApiKeys::presented("Basic c2s=", "sk-2"), "sk-2");  // not a bearer token: the other header
  EXPECT_EQ(ApiKeys::presented("", ""), "");
}

TEST(CorsPolicy, ListedOriginsOnlyAndHeaderNamesEchoed) {
  const CorsPolicy cors{{"https://app.example", "http://localhost:3000"}};
  EXPECT_TRUE(cors.allows("https://app.example"));
  EXPECT_TRUE(cors.allows("HTTPS://APP.EXAMPLE"));
  EXPECT_FALSE(cors.allows("https://app.example.evil"));
  EXPECT_FALSE(cors.allows(""));
  EXPECT_FALSE(CorsPolicy{}.allows("https://app.example"));
  EXPECT_TRUE(CorsPolicy{{"*"}}.allows("https://anyone.example"));
  EXPECT_EQ(CorsPolicy::echoed_headers("authorization, content-type, x-stainless-os"),
            "authorization, content-type, x-stainless-os");
  EXPECT_EQ(CorsPolicy::echoed_headers("content-type\r\nSet-Cookie: a=b"), "");
}

std::shared_ptr<const StoredResponse> stored(size_t bytes) {
  auto e = std::make_shared<StoredResponse>();
  e->response = std::string(bytes, 'x');  // its JSON text is bytes + 2 (the quotes)
  e->conversation = nlohmann::ordered_json::array();  // "[]"
  return e;
}

TEST(ResponseStore, LeastRecentlyUsedGoFirstBeyondTheCountOrTheBytes) {
  ResponseStore by_count(2, 1 << 20);
  by_count.put("a", stored(1));
  by_count.put("b", stored(1));
  ASSERT_NE(by_count.get("a"), nullptr);  // a used after b: b goes first
  by_count.put("c", stored(1));
  EXPECT_NE(by_count.get("a"), nullptr);
  EXPECT_EQ(by_count.get("b"), nullptr);
  EXPECT_NE(by_count.get("c"), nullptr);
  EXPECT_TRUE(by_count.erase("a"));
  EXPECT_FALSE(by_count.erase("a"));
  EXPECT_EQ(by_count.size(), 1u);

  ResponseStore by_bytes(100, 45);  // each entry below costs 10 + 2 + 2 bytes
  for (const char* id : {"a", "b", "c"}) EXPECT_TRUE(by_bytes.put(id, stored(10)));
  by_bytes.get("a");
  by_bytes.put("d", stored(10));  // 56 > 45: b, the least recently used, goes
  EXPECT_EQ(by_bytes.get("b"), nullptr);
  EXPECT_NE(by_bytes.get("a"), nullptr);
  EXPECT_EQ(by_bytes.size(), 3u);
  EXPECT_FALSE(by_bytes.put("big", stored(100)));  // over the whole budget: not kept, nothing dropped
  EXPECT_EQ(by_bytes.size(), 3u);
}

// Each event's data, in order.
std::vector<nlohmann::ordered_json> events_of(const std::string& sse) {
  std::vector<nlohmann::ordered_json> out;
  for (size_t at = 0; (at = sse.find("data: ", at)) != std::string::npos; at += 6)
    out.push_back(nlohmann::ordered_json::parse(sse.substr(at + 6, sse.find('\n', at) - at - 6)));
  return out;
}

TEST(ResponseEvents, AFailureClosesTheOpenItemThenErrorAndResponseFailed) {
  ResponseEvents s(ResponseHead{"resp_1", "m", 0, nlohmann::ordered_json::object()});
  std::string sse = s.start();
  chat::StreamDelta d;
  d.content = "Hel";
  sse += s.delta(d);
  sse += s.fail("out of memory");
  const auto events = events_of(sse);
  std::vector<std::string> types;
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i]["sequence_number"], i);
    types.push_back(events[i]["type"]);
  }
  EXPECT_EQ(types, (std::vector<std::string>{"response.created", "response.in_progress", "response.output_item.added",
                                             "response.content_part.added", "response.output_text.delta",
                                             "response.output_text.done", "response.content_part.done",
                                             "response.output_item.done", "error", "response.failed"}));
  EXPECT_EQ(events[8]["message"], "out of memory");
  const auto& failed = events.back()["response"];
  EXPECT_EQ(failed["status"], "failed");
  EXPECT_EQ(failed["error"]["message"], "out of memory");
  EXPECT_EQ(failed["output"][0]["status"], "incomplete");
  EXPECT_EQ(failed["output"][0]["content"][0]["text"], "Hel");
}

TEST(ResponseEvents, AWholeCallIsAddedWithItsArgumentsAndDone) {
  ResponseEvents s(ResponseHead{"resp_1", "m", 0, nlohmann::ordered_json::object()});
  std::string sse = s.start();
  chat::StreamDelta d;
  d.tool_calls.push_back({0, true, "f", "{\"a\": "});
  d.tool_calls.push_back({0, false, "", "1}"});
  d.tool_calls.push_back({1, true, "g", "{}"});
  sse += s.delta(d);
  GenerateResult r;
  r.tokens = {1, 2};
  r.hit_eos = true;
  r.prompt_tokens = 5;
  r.reused_tokens = 4;
  sse += s.finish(r, 0);
  const auto events = events_of(sse);
  const auto& done = events.back();
  EXPECT_EQ(done["type"], "response.completed");
  const auto& out = done["response"]["output"];
  ASSERT_EQ(out.size(), 2u);  // calls only: no empty message
  EXPECT_EQ(out[0]["arguments"], "{\"a\": 1}");
  EXPECT_EQ(out[0]["name"], "f");
  EXPECT_EQ(out[1]["arguments"], "{}");
  EXPECT_EQ(done["response"]["usage"]["output_tokens"], 3);
  EXPECT_EQ(done["response"]["usage"]["input_tokens_details"]["cached_tokens"], 4);
  EXPECT_EQ(s.response(), done["response"]);
}

}  // namespace
}  // namespace dsv4
