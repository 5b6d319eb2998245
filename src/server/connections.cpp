#include "server/connections.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "core/check.h"

namespace dsv4 {

namespace {

struct Endpoint {
  std::string addr;
  int port = -1;
};

// An IPv4 or IPv6 address as text (httplib's remote_addr spelling), and its port.
Endpoint endpoint(const sockaddr_storage& s) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (s.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(s);
    inet_ntop(AF_INET, &a.sin_addr, buf, sizeof buf);
    return {buf, ntohs(a.sin_port)};
  }
  if (s.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(s);
    inet_ntop(AF_INET6, &a.sin6_addr, buf, sizeof buf);
    return {buf, ntohs(a.sin6_port)};
  }
  return {};
}

// Calls f(fd, inode, local, peer) for every connected TCP socket of this process.
template <typename F>
void each_connection(F f) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    char* end = nullptr;
    const std::string name = entry.path().filename().string();
    const long fd = std::strtol(name.c_str(), &end, 10);
    if (*end != '\0') continue;
    struct stat st {};
    if (fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage local{}, peer{};
    socklen_t ll = sizeof local, pl = sizeof peer;
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &ll) != 0) continue;
    if (getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;  // listening
    if (f(static_cast<int>(fd), static_cast<unsigned long>(st.st_ino), endpoint(local), endpoint(peer))) return;
  }
}

}  // namespace

std::string listen_error(const std::string& host, int port, int err) {
  std::string m = "cannot listen on " + host + ":" + std::to_string(port);
  if (err) m += std::string(": ") + std::strerror(err);
  if (err == EADDRINUSE) m += " (another server has this port; --port 0 picks a free one)";
  return m;
}

void check_can_listen(const std::string& host, int port) {
  addrinfo hints{}, *found = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  DSV4_CHECK(rc == 0, "cannot listen on ", host, ":", port, ": ", gai_strerror(rc));
  int err = 0;
  const int fd = socket(found->ai_family, found->ai_socktype, found->ai_protocol);
  if (fd < 0) {
    err = errno;
  } else {
    int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);  // as the server will
    if (bind(fd, found->ai_addr, found->ai_addrlen) != 0) err = errno;
    close(fd);
  }
  freeaddrinfo(found);
  if (err) throw Error(listen_error(host, port, err));
}

int find_connection(int local_port, const std::string& remote_addr, int remote_port) {
  int found = -1;
  each_connection([&](int fd, unsigned long, const Endpoint& local, const Endpoint& peer) {
    if (local.port != local_port || peer.port != remote_port || peer.addr != remote_addr) return false;
    found = fd;
    return true;
  });
  return found;
}

std::vector<ConnectionInfo> connections_on(int local_port) {
  std::vector<ConnectionInfo> found;
  each_connection([&](int fd, unsigned long inode, const Endpoint& local, const Endpoint& peer) {
    if (local.port == local_port) found.push_back({fd, inode, peer.addr, peer.port});
    return false;
  });
  return found;
}

bool shutdown_connection(const ConnectionInfo& c) {
  // A duplicate cannot be reused under us: check that it is the same socket, then shut it down
  // (which acts on the socket, not on the descriptor).
  const int fd = fcntl(c.fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return false;
  struct stat st {};
  const bool same = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) && static_cast<unsigned long>(st.st_ino) == c.inode;
  if (same) ::shutdown(fd, SHUT_RDWR);
  close(fd);
  return same;
}

bool peer_gone(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 0) <= 0) return false;  // nothing to read: the client is waiting
  if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return true;
  char c;
  const ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

}  // namespace dsv4
