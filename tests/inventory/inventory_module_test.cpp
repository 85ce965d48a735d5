// module tests follow
