"""The bot's side of adapter training: a server's run request is checked (`request`),
waits its turn in the shared trainer's line (`queue`), runs in the trainer's
process and is recorded so a killed bot finds it again (`runs`, `record`), and
shows its progress, files and buttons in Discord (`progress`, `board`,
`status`, `files`, `buttons`). The trainer itself is the top-level `training`
package."""
