// The server's accepted TCP connections, found by their addresses. cpp-httplib (Debian's 0.11)
// hands a handler no socket and no way to learn that its client has gone, and keeps idle
// keep-alive connections open past stop(); so the server looks its connections up among the
// process's descriptors (/proc/self/fd): to cancel a non-streaming generation whose client
// disconnected, and to close every connection at shutdown.
#pragma once

#include <string>
#include <vector>

namespace dsv4 {

// Throws Error when host:port cannot be listened on (most often: another server has it), so
// that `dsv4 serve` says so before it spends minutes loading a model. The server's own bind
// checks again.
void check_can_listen(const std::string& host, int port);
// The message for a failed bind of host:port with errno err.
std::string listen_error(const std::string& host, int port, int err);

// The socket whose local end is local_port and whose peer is remote_addr:remote_port; -1 if none.
int find_connection(int local_port, const std::string& remote_addr, int remote_port);
// A connected socket, and the socket it was when it was listed: a descriptor may be closed and
// its number reused by the time it is acted on.
struct ConnectionInfo {
  int fd = -1;
  unsigned long inode = 0;
  std::string peer_addr;
  int peer_port = -1;
};
// Sockets connected to a peer with local_port as their local end (the listening socket is not one).
std::vector<ConnectionInfo> connections_on(int local_port);
// Shuts down both directions of the connection c, if its descriptor is still that socket: a
// thread blocked reading or writing it returns at once. False if it was gone.
bool shutdown_connection(const ConnectionInfo& c);
// The peer has closed or reset the connection (it may still have unread bytes; they do not count
// as closing). Never blocks.
bool peer_gone(int fd);

}  // namespace dsv4
