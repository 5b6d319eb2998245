// Slow clients. cpp-httplib's read timeout is per read, so a client that sends its request a
// byte a second holds a connection, and its thread, forever. The watchdog gives every
// connection `timeout` to deliver a whole request (head and body), counted from when the
// connection is first seen and again after each answer, and shuts down those that take longer.
// A connection whose request is being handled (a generation, a stream being written) is never
// timed out: handling() and answered() bracket that time.
//
// httplib hands the server no socket, so the watchdog finds the connections among the process's
// descriptors (connections.h), a few times a second.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace dsv4 {

class RequestWatchdog {
 public:
  RequestWatchdog(int local_port, std::chrono::milliseconds timeout);
  ~RequestWatchdog();
  RequestWatchdog(const RequestWatchdog&) = delete;
  RequestWatchdog& operator=(const RequestWatchdog&) = delete;

  // The request from this peer has arrived and is being handled.
  void handling(const std::string& addr, int port);
  // Its answer has been written: the connection's next request starts its clock.
  void answered(const std::string& addr, int port);

  size_t timed_out() const { return timed_out_; }  // connections shut down so far

 private:
  struct Connection {
    std::chrono::steady_clock::time_point since;  // seen, or last answered
    bool handling = false;
    bool shut = false;  // already shut down: its thread has yet to close it
    unsigned long long scan = 0;  // last scan that saw it
  };
  void watch();
  void scan();

  const int local_port_;
  const std::chrono::milliseconds timeout_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::map<std::pair<std::string, int>, Connection> connections_;  // by peer address and port
  unsigned long long scans_ = 0;
  bool stop_ = false;
  std::atomic<size_t> timed_out_{0};
  std::thread thread_;
};

}  // namespace dsv4
